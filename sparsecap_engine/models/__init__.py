"""Caption models. Importing any of them registers every family and preset (``presets.py``), so
``registry.build_model`` and ``registry.preset`` always see the whole zoo."""

from sparsecap_engine.models import presets as _presets  # noqa: F401
