"""Checkpoints that ship inside the package, so that a fresh install captions a scene at once.

``demo``: Up-Down (``ud-small``, on the scenes' v2 region features) pruned by supermask to 95 %, exported with int8
values (189 KB): the README's main job (``sparsecap prune --method supermask --sparsity 0.95 --features auto --lr 6e-3
--steps 1200 --name demo``), then ``sparsecap export runs/demo --out FILE --values int8 --check``: test CIDEr-D 1.306
(1.315 with exact values); fresh scenes captioned right: 15 of the README's 20 (seeds 12345…), 13 of seeds 0–19, 132
of 200 (``benchmarks/demo_scenes.py``, ``data/scene_check.py``). It captions the synthetic scenes (``sparsecap data
scene``), not photographs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from sparsecap_engine.errors import UsageError

BUNDLED: dict[str, dict[str, Any]] = {
    "demo": {
        "file": "ud-small-smp95-int8.safetensors",
        "about": "ud-small, supermask 95 %, int8 values; captions the synthetic scenes (sparsecap data scene)",
        "test_cider": 1.306,
        "command": "sparsecap prune --method supermask --sparsity 0.95 --features auto --lr 6e-3 --steps 1200 "
                   "--name demo && sparsecap export runs/demo --out demo.safetensors --values int8 --check",
    },
}


def bundled_path(name: str = "demo") -> Path:
    """The file of a bundled checkpoint."""
    if name not in BUNDLED:
        raise UsageError(f"no bundled model {name!r}; bundled: {', '.join(BUNDLED)}")
    return Path(str(resources.files(__package__) / BUNDLED[name]["file"]))
