"""Parameter counts per module (shared parameters counted once)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn


def parameter_breakdown(model: nn.Module, depth: int = 2) -> dict[str, Any]:
    """``{"total": n, "modules": {prefix: n}}`` grouped by the first ``depth`` name components."""
    modules: dict[str, int] = {}
    total = 0
    for name, p in model.named_parameters():  # named_parameters() already yields shared tensors once
        prefix = ".".join(name.split(".")[:depth])
        modules[prefix] = modules.get(prefix, 0) + p.numel()
        total += p.numel()
    return {"total": total, "modules": modules}


def write_breakdown(path: Path, model: nn.Module) -> None:
    """Write :func:`parameter_breakdown` as JSON (the run's ``model_params.json``)."""
    from sparsecap_engine.atomic import atomic_write_text

    atomic_write_text(Path(path), json.dumps(parameter_breakdown(model), indent=1))
