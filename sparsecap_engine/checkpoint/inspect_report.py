"""What ``sparsecap inspect`` reports about a checkpoint: per pruned tensor storage, totals, size comparisons."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparsecap_engine.checkpoint.dense import dedup_state
from sparsecap_engine.checkpoint.sparse import FORMAT as SPARSE_FORMAT
from sparsecap_engine.checkpoint.sparse import storage_sizes
from sparsecap_engine.humanize import human_bytes

REPORT_VERSION = 1


def _pruned_names(path: Path, model: torch.nn.Module, meta: dict[str, Any]) -> list[str]:
    """Pruned tensors: the sparse file's own table, the masks sibling, else every prunable weight of the model."""
    if meta.get("format") == SPARSE_FORMAT:
        return [n for n, e in meta.get("storage", {}).items() if e.get("pruned")]
    from sparsecap_engine.checkpoint.masks_file import load_masks, masks_path
    from sparsecap_engine.pruning.scope import prunable

    side = masks_path(path)
    if side.is_file():
        return list(load_masks(side)[0])
    return list(prunable(model))


def size_estimates(state: dict[str, Tensor], pruned: set[str]) -> dict[str, int]:
    """Bytes the tensors would take as dense fp32/fp16, torch COO (int64 indices) fp32/fp16 and our sparse format.

    Tensor bytes only (headers excluded); integer/bool buffers count at their own size in every variant."""
    out = dict.fromkeys(("dense_fp32", "dense_fp16", "coo_int64_fp32", "coo_int64_fp16", "sparse_fp32",
                         "sparse_fp16"), 0)
    for name, t in state.items():
        if not t.is_floating_point():
            for k in out:
                out[k] += t.numel() * t.element_size()
            continue
        n = t.numel()
        out["dense_fp32"] += 4 * n
        out["dense_fp16"] += 2 * n
        if name in pruned and t.dim() >= 2:
            nnz = int((t != 0).sum())
            out["coo_int64_fp32"] += nnz * (8 * t.dim() + 4)
            out["coo_int64_fp16"] += nnz * (8 * t.dim() + 2)
            for vb, key in ((4, "sparse_fp32"), (2, "sparse_fp16")):
                sizes = storage_sizes(tuple(t.shape), nnz, vb)
                out[key] += min(sizes.values())
        else:
            for key, vb in (("coo_int64_fp32", 4), ("coo_int64_fp16", 2), ("sparse_fp32", 4), ("sparse_fp16", 2)):
                out[key] += vb * n
    return out


def checkpoint_report(path: Path) -> dict[str, Any]:
    """The full inspect report of one checkpoint file (dense or sparse); JSON-serialisable."""
    from sparsecap_engine.checkpoint.model_io import load_model, read_state
    from sparsecap_engine.models.summary import parameter_breakdown
    from sparsecap_engine.pruning.report import output_vocabulary

    path = Path(path)
    model, vocab, meta = load_model(path, finite=False)  # describes a NaN checkpoint (its nnz, sizes) too
    state, _ = read_state(path, finite=False)
    tensors, aliases = dedup_state(state)
    names = _pruned_names(path, model, meta)
    names = [aliases.get(n, n) for n in names]
    order = {n: i for i, n in enumerate(model.state_dict())}
    names = sorted({n for n in names if n in tensors}, key=lambda n: (order.get(n, len(order)), n))
    storage = meta.get("storage", {}) if meta.get("format") == SPARSE_FORMAT else {}
    rows = []
    for name in names:
        t = tensors[name]
        nnz = int((t != 0).sum())
        entry = storage.get(name, {})
        rows.append({
            "name": name,
            "shape": list(t.shape),
            "numel": t.numel(),
            "nnz": nnz,
            "sparsity": 1 - nnz / t.numel() if t.numel() else 0.0,
            "bytes": int(entry.get("bytes", t.numel() * t.element_size())),
            "storage": entry.get("kind", "dense"),
        })
    p_numel = sum(r["numel"] for r in rows)
    p_nnz = sum(r["nnz"] for r in rows)
    params = {id(p): p for p in model.parameters()}.values()
    a_numel = sum(p.numel() for p in params)
    a_nnz = sum(int((p != 0).sum()) for p in params)
    breakdown = parameter_breakdown(model)
    return {
        "report_version": REPORT_VERSION,
        "checkpoint": str(path),
        "format": meta.get("format"),
        "values": meta.get("values", "fp32"),
        "model": meta.get("model"),
        "encoder": meta.get("encoder"),
        "vocab_size": len(vocab),
        "step": meta.get("step"),
        "metrics": meta.get("metrics"),
        "parameters": breakdown["total"],
        "file_bytes": path.stat().st_size,
        "output_words": output_vocabulary(model, {}),  # words whose output row kept a weight (None: no output layer)
        "tensors": rows,
        "totals": {
            "pruned": {"numel": p_numel, "nnz": p_nnz, "sparsity": 1 - p_nnz / p_numel if p_numel else 0.0},
            "all": {"numel": a_numel, "nnz": a_nnz, "sparsity": 1 - a_nnz / a_numel if a_numel else 0.0},
        },
        "sizes": {"file": path.stat().st_size, **size_estimates(tensors, set(names))},
        "_breakdown": breakdown["modules"],
    }


def bench_report(path: Path, threads: int = 1, repeat: int = 3, max_len: int = 16) -> dict[str, Any]:
    """Dense vs sparse CPU latency of greedily captioning one (random) image with this checkpoint."""
    from sparsecap_engine.checkpoint.model_io import load_model
    from sparsecap_engine.checkpoint.sparse_infer import bench_latency, example_batch, sparsify

    model, _, meta = load_model(path)
    sparse = copy.deepcopy(model)
    converted = sparsify(sparse).converted
    batch = example_batch(model, int(meta.get("image_size", 64)))
    res = bench_latency(model, sparse, batch, threads=threads, max_len=max_len, repeat=repeat)
    return {**res, "converted_layers": len(converted), "max_len": max_len}


def plot_sparsity(rows: list[dict[str, Any]], out: Path, title: str = "") -> None:
    """Per-layer sparsity bar chart as PNG (the same chart ``sparsecap prune`` writes)."""
    from sparsecap_engine.atomic import atomic_write_bytes
    from sparsecap_engine.pruning.report import sparsity_plot_png

    numel = sum(r["numel"] for r in rows) or 1
    overall = sum(r["sparsity"] * r["numel"] for r in rows) / numel
    report = {"tensors": {r["name"]: {"sparsity": r["sparsity"], "pruned": True} for r in rows},
              "pruned": {"sparsity": overall}}
    atomic_write_bytes(Path(out), sparsity_plot_png(report, title=title))


__all__ = ["checkpoint_report", "bench_report", "plot_sparsity", "size_estimates", "human_bytes"]
