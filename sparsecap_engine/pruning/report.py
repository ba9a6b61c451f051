"""Sparsity report: per prunable tensor shape, numel, nnz, sparsity; totals over pruned tensors and over all parameters.

Works on a masked model (nnz of a masked tensor = ones in its hard mask) and on a plain one (nnz = non-zero weights).
Written as CSV, JSON and a PNG bar chart of per-layer sparsity.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sparsecap_engine.atomic import atomic_write_bytes, atomic_write_text
from sparsecap_engine.pruning.masks import find_masks
from sparsecap_engine.pruning.scope import _raw_param, _scan


def _entry(shape: tuple[int, ...], numel: int, nnz: int, pruned: bool) -> dict[str, Any]:
    return {"shape": list(shape), "numel": numel, "nnz": nnz, "sparsity": 1.0 - nnz / max(1, numel), "pruned": pruned}


def _total(rows: list[tuple[int, int]]) -> dict[str, Any]:
    numel = sum(n for n, _ in rows)
    nnz = sum(k for _, k in rows)
    return {"numel": numel, "nnz": nnz, "sparsity": 1.0 - nnz / max(1, numel)}


@torch.no_grad()
def sparsity_report(model: nn.Module, masks: dict[str, Tensor] | None = None) -> dict[str, Any]:
    """``{"tensors": {name: {shape, numel, nnz, sparsity, pruned}}, "pruned": totals, "all": totals}``.

    ``masks`` (name → 0/1) defaults to the masks attached to the model; prunable tensors without a mask count their
    non-zero weights and are listed with ``pruned: false``. ``pruned`` totals cover masked tensors only (the
    reference's definition); ``all`` covers every parameter (shared ones once), biases and norms included.
    """
    if masks is None:
        masks = {name: slot.hard() for name, slot in find_masks(model).items()}
    tensors: dict[str, dict[str, Any]] = {}
    counted: dict[int, int] = {}
    for name, where in _scan(model).items():
        w = _raw_param(*where[0])
        if name in masks:
            m = masks[name]
            nnz = int(torch.count_nonzero(m)) if m.dtype == torch.bool else int(torch.count_nonzero(m != 0))
        else:
            nnz = int(torch.count_nonzero(w))
        tensors[name] = _entry(tuple(w.shape), w.numel(), nnz, name in masks)
        counted[id(w)] = nnz
    all_rows = []
    for p in model.parameters():  # shared parameters are yielded once
        all_rows.append((p.numel(), counted.get(id(p), int(torch.count_nonzero(p)))))
    pruned_rows = [(t["numel"], t["nnz"]) for t in tensors.values() if t["pruned"]]
    return {"tensors": tensors, "pruned": _total(pruned_rows), "all": _total(all_rows)}


@torch.no_grad()
def output_vocabulary(model: nn.Module, masks: dict[str, Tensor] | None = None) -> dict[str, Any] | None:
    """How many words the pruned output projection can still choose: ``{"layer", "words", "emit"}``.

    The output projection is the prunable ``nn.Linear`` with one output per vocabulary entry (the model config's
    ``vocab_size``). A word whose row keeps no weight has its bias alone as its logit, the same for every image and
    context: the model cannot choose it. ``None`` when the model has no such layer."""
    config = getattr(model, "config", None)
    vocab = config.get("vocab_size") if isinstance(config, dict) else None
    if not vocab:
        return None
    found = None
    for name, where in _scan(model).items():
        module, pname = where[0]
        if isinstance(module, nn.Linear) and module.out_features == vocab:
            found = name, module, pname  # the last one: the output sits at the end of the decoder
    if found is None:
        return None
    name, module, pname = found
    if masks is None:
        masks = {n: slot.hard() for n, slot in find_masks(model).items()}
    kept = masks[name] if name in masks else _raw_param(module, pname)
    emit = int((kept != 0).any(dim=1).sum())
    return {"layer": name, "words": int(vocab), "emit": emit}


def nnz_within(sparsity: float, target: float, tolerance: float = 0.05) -> bool:
    """Reference rule for ``best``: ``|(1 − s_t) − (1 − s)| / (1 − s_t) ≤ 5 %`` (NNZ within 5 % of the target's)."""
    density_t = 1.0 - target
    if density_t <= 0:
        return sparsity >= 1.0
    return abs(density_t - (1.0 - sparsity)) / density_t <= tolerance


def report_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "shape", "numel", "nnz", "sparsity", "pruned"])
    for name, t in report["tensors"].items():
        w.writerow([name, "x".join(map(str, t["shape"])), t["numel"], t["nnz"], f"{t['sparsity']:.6f}", t["pruned"]])
    for key, label in (("pruned", "TOTAL (pruned tensors)"), ("all", "TOTAL (all parameters)")):
        tot = report[key]
        w.writerow([label, "", tot["numel"], tot["nnz"], f"{tot['sparsity']:.6f}", ""])
    return buf.getvalue()


def sparsity_plot_png(report: dict[str, Any], target: float | None = None, title: str = "") -> bytes:
    """Horizontal bars of per-layer sparsity (matplotlib, Agg canvas; no global backend state touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(report["tensors"])
    values = [report["tensors"][n]["sparsity"] for n in names]
    colors = ["tab:blue" if report["tensors"][n]["pruned"] else "tab:gray" for n in names]
    fig = Figure(figsize=(8, 1.2 + 0.28 * len(names)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = list(range(len(names)))
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, labels=names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("sparsity")
    if target is not None:
        ax.axvline(target, color="tab:red", linestyle="--", linewidth=1, label=f"target {target:g}")
        ax.legend(loc="lower right", fontsize=7)
    overall = report["pruned"]["sparsity"]
    ax.set_title(title or f"per-layer sparsity (overall {overall:.4f})", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_report(report: dict[str, Any], out_dir: Path, plots_dir: Path, extra: dict[str, Any] | None = None,
                 target: float | None = None) -> dict[str, Path]:
    """``sparsity.csv`` and ``sparsity.json`` in ``out_dir``, ``sparsity.png`` in ``plots_dir``."""
    paths = {"csv": Path(out_dir) / "sparsity.csv", "json": Path(out_dir) / "sparsity.json",
             "png": Path(plots_dir) / "sparsity.png"}
    atomic_write_text(paths["csv"], report_csv(report))
    atomic_write_text(paths["json"], json.dumps({**(extra or {}), **report}, indent=1))
    atomic_write_bytes(paths["png"], sparsity_plot_png(report, target))
    return paths


def summary(report: dict[str, Any], target: float | None = None, method: str = "") -> dict[str, Any]:
    """The short sparsity summary stored in checkpoint metadata."""
    return {
        "method": method,
        "target": target,
        "sparsity": report["pruned"]["sparsity"],
        "nnz": report["pruned"]["nnz"],
        "numel": report["pruned"]["numel"],
        "all_sparsity": report["all"]["sparsity"],
        "all_nnz": report["all"]["nnz"],
    }
