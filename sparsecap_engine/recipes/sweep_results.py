"""A sweep's results: one row per cell, ``results.json``/``.csv``/``.md`` and the plots (CIDEr vs sparsity, size vs
CIDEr, per-layer sparsity heat maps), all rewritten atomically after every cell."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

from sparsecap_engine.atomic import atomic_write_bytes, atomic_write_text
from sparsecap_engine.recipes.sweep import Cell, SweepPlan

ROW_KEYS = ("cell", "method", "target", "status", "sparsity", "nnz", "numel", "steps", "budget", "CIDEr", "Bleu_4",
            "METEOR", "ROUGE_L", "distinct_captions", "top_caption_share", "output_words", "size_bytes", "latency_ms",
            "latency_vs_dense", "wall_s")
#: a cell whose most common test caption covers at least this share of the images is flagged as not image-grounded
GENERIC_SHARE = 0.5
SCORE_KEYS = ("CIDEr", "Bleu_4", "METEOR", "ROUGE_L")
#: what a cell measures after its run (written by ``measure_run`` in the cell's run directory)
MEASURE_FILE = Path("export") / "measure.json"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or ``None`` when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def make_row(cell: Cell, status: str, wall_s: float | None, measure: dict[str, Any] | None,
             sparsity: dict[str, Any] | None) -> dict[str, Any]:
    """A result row from what the cell's run left: ``measure`` (scores, size, latency) and its ``sparsity.json``.

    The dense cell reports sparsity 0 and NNZ = numel of the prunable tensors; ``latency_vs_dense`` is filled in by
    ``with_ratios``."""
    measure = measure or {}
    scores = measure.get("scores") or {}
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    row.update(cell=cell.id, method=cell.method, target=cell.sparsity, status=status, steps=cell.steps,
               budget=cell.budget, wall_s=None if wall_s is None else round(float(wall_s), 2))
    for key in SCORE_KEYS:
        value = scores.get(key)
        row[key] = float(value) if isinstance(value, (int, float)) else None
    diversity = measure.get("diversity")
    if diversity is None and measure.get("eval_dir"):  # measured before diversity was recorded
        from sparsecap_engine.recipes.sweep_measure import caption_diversity

        diversity = caption_diversity(Path(measure["eval_dir"]) / "captions.json")
    if diversity:
        row["distinct_captions"], row["top_caption_share"] = diversity["distinct"], diversity["top_share"]
    words = measure.get("output_words")
    if isinstance(words, dict):
        row["output_words"] = words.get("emit")
    row["size_bytes"] = measure.get("size_bytes")
    row["latency_ms"] = measure.get("latency_ms")
    if cell.method == "dense":
        numel = (measure.get("prunable") or {}).get("numel")
        row.update(sparsity=0.0 if measure else None, nnz=numel, numel=numel)
    elif sparsity and "pruned" in sparsity:
        tot = sparsity["pruned"]
        row.update(sparsity=tot.get("sparsity"), nnz=tot.get("nnz"), numel=tot.get("numel"))
    return row


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``latency_vs_dense`` = cell latency / dense latency (None without a dense latency)."""
    dense = next((r for r in rows if r["method"] == "dense"), None)
    base = dense.get("latency_ms") if dense else None
    out = []
    for row in rows:
        lat = row.get("latency_ms")
        ratio = round(lat / base, 4) if isinstance(lat, (int, float)) and base else None
        out.append({**row, "latency_vs_dense": ratio})
    return out


def load_rows(folder: Path) -> dict[str, dict[str, Any]]:
    """The rows of an existing ``results.json``, by cell id (empty for a new sweep)."""
    data = read_json(Path(folder) / "results.json") or {}
    return {r["cell"]: r for r in data.get("cells", []) if isinstance(r, dict) and "cell" in r}


def ordered(plan: SweepPlan, rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The plan's cells that have a row, in plan order, with latency ratios."""
    return with_ratios([rows[c.id] for c in plan.cells if c.id in rows])


def write_results(plan: SweepPlan, rows: dict[str, dict[str, Any]], messages: dict[str, str] | None = None,
                  plots: bool = True, methods: list[str] | None = None) -> dict[str, Path]:
    """Rewrite ``results.json``, ``results.csv``, ``results.md`` and (``plots``) the plots from ``rows``; the
    per-layer heat maps only of ``methods`` (None: all)."""
    folder = plan.folder
    table = ordered(plan, rows)
    dense = next((r for r in table if r["method"] == "dense"), None)
    paths = {"json": folder / "results.json", "csv": folder / "results.csv", "md": folder / "results.md"}
    payload = {"cells": table, "dense": dense, "updated": time.time()}
    atomic_write_text(paths["json"], json.dumps(payload, indent=1))
    atomic_write_text(paths["csv"], results_csv(table))
    atomic_write_text(paths["md"], results_markdown(plan, table, messages or {}))
    if plots:
        paths.update(write_plots(plan, table, methods))
    return paths


def results_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ROW_KEYS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in ROW_KEYS})
    return buf.getvalue()


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def human_size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def results_markdown(plan: SweepPlan, rows: list[dict[str, Any]], messages: dict[str, str]) -> str:
    """The results table (test split, greedy decoding) with each method's step budget."""
    d, f = plan.dense_steps, plan.finetune_steps
    lines = [
        f"# Sweep `{plan.name}`",
        "",
        "Test split, greedy decoding, pycocoevalcap scores. Words: vocabulary entries whose output row kept a weight "
        "(the others the model can never choose). Size: exported fp16 sparse checkpoint. Latency: CPU, "
        "batch 1, 1 thread, greedy decoding of one image (median).",
        "",
        "Step budgets: **dense** " + str(d) + " steps; **supermask, gradual, snip** train with pruning from scratch "
        f"for {d + f} steps (= dense {d} + fine-tune {f}); **magnitude** prunes the dense run and fine-tunes "
        f"{f} steps; **lottery** prunes the dense run, rewinds to its init and retrains {d + f} steps.",
        "",
        "| cell | method | steps (budget) | target | sparsity | NNZ | CIDEr | BLEU-4 | METEOR | ROUGE-L | distinct "
        "captions | top caption share | words | size | latency ms | × dense | wall s | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines[6:6] = [*paper_table(rows), ""]
    for r in rows:
        target = "–" if r["method"] == "dense" else f"{r['target']:.2%}"
        lines.append(
            f"| {r['cell']} | {r['method']} | {r['budget']} | {target} | {_num(r['sparsity'], '.2%')} | "
            f"{_num(r['nnz'], ',')} | {_num(r['CIDEr'], '.3f')} | {_num(r['Bleu_4'], '.3f')} | "
            f"{_num(r['METEOR'], '.3f')} | {_num(r['ROUGE_L'], '.3f')} | {_num(r.get('distinct_captions'), ',')} | "
            f"{_num(r.get('top_caption_share'), '.0%')} | {_num(r.get('output_words'), ',')} | "
            f"{human_size(r['size_bytes'])} | "
            f"{_num(r['latency_ms'], '.1f')} | {_num(r['latency_vs_dense'], '.2f')} | {_num(r['wall_s'], '.0f')} | "
            f"{r['status']} |")
    notes = [f"- `{cid}`: {msg}" for cid, msg in messages.items() if msg]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def paper_table(rows: list[dict[str, Any]]) -> list[str]:
    """The paper's layout: test CIDEr with one row per target sparsity and one column per method (best in bold),
    the dense baseline in the heading; a cell that missed its target or failed is marked."""
    dense = next((r for r in rows if r["method"] == "dense"), None)
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "dense"]
    targets = sorted({r["target"] for r in rows if r["method"] != "dense"})
    if not methods:
        return []
    by = {(r["method"], r["target"]): r for r in rows}
    base = (_num(dense["CIDEr"], ".3f") + ("†" if generic(dense) else "")) if dense else "–"
    out = [f"Test CIDEr (dense baseline {base}):", "",
           "| sparsity | NNZ | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for t in targets:
        cells = [by.get((m, t)) for m in methods]
        scores = [c["CIDEr"] for c in cells if c and c["CIDEr"] is not None and c["status"] == "completed"]
        best = max(scores) if scores else None
        nnz = next((c["nnz"] for c in cells if c and c["nnz"] is not None), None)
        parts = []
        for c in cells:
            if c is None or c["CIDEr"] is None:
                parts.append("–" if c is None else c["status"])
                continue
            text = f"{c['CIDEr']:.3f}" + ("†" if generic(c) else "")
            if c["status"] != "completed":
                text += f" ({c['status']})"
            parts.append(f"**{text}**" if c["CIDEr"] == best and c["status"] == "completed" else text)
        out.append(f"| {t:.2%} | {_num(nnz, ',')} | " + " | ".join(parts) + " |")
    if any(generic(r) for r in rows):
        out += ["", f"† one caption for ≥ {GENERIC_SHARE:.0%} of the test images: the model is not image-grounded and "
                "its CIDEr is that of a generic caption, not a comparison of pruning methods."]
    return out


def generic(row: dict[str, Any] | None) -> bool:
    """Did the cell write (nearly) one caption for every test image?"""
    share = (row or {}).get("top_caption_share")
    return isinstance(share, (int, float)) and share >= GENERIC_SHARE


# --- plots ------------------------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _scored(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if isinstance(r.get("CIDEr"), (int, float))]


def cider_vs_sparsity_png(plan: SweepPlan, rows: list[dict[str, Any]]) -> bytes:
    """Test CIDEr against target sparsity (categorical axis), one line per method, dense as a dashed line."""
    fig = _figure(7, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    xs = {s: i for i, s in enumerate(plan.sparsity)}
    scored = _scored(rows)
    for method in [m for m in plan.methods if m != "dense"]:
        pts = sorted((xs[r["target"]], r["CIDEr"]) for r in scored if r["method"] == method and r["target"] in xs)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    dense = next((r for r in scored if r["method"] == "dense"), None)
    if dense is not None:
        ax.axhline(dense["CIDEr"], color="black", linestyle="--", linewidth=1, label=f"dense {dense['CIDEr']:.3f}")
    ax.set_xticks(list(xs.values()), labels=[f"{s:.2%}" for s in xs])
    ax.set_xlim(-0.3, max(0, len(xs) - 1) + 0.3)
    return _finish(fig, ax, "target sparsity", f"sweep {plan.name}: CIDEr vs sparsity")


def _finish(fig, ax, xlabel: str, title: str) -> bytes:
    """Labels (y: test CIDEr), legend when there is something to label, grid; the PNG bytes."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test CIDEr")
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def size_vs_cider_png(plan: SweepPlan, rows: list[dict[str, Any]]) -> bytes:
    """Exported fp16 sparse checkpoint size against test CIDEr, one marker per method."""
    fig = _figure(7, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    markers = dict(zip(plan.methods, "osD^vP*X", strict=False))
    for method in plan.methods:
        pts = [(r["size_bytes"] / 1e3, r["CIDEr"]) for r in _scored(rows)
               if r["method"] == method and isinstance(r.get("size_bytes"), (int, float))]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=markers.get(method, "o"), label=method)
    ax.set_xscale("log")
    return _finish(fig, ax, "fp16 sparse checkpoint size (KB, log)", f"sweep {plan.name}: size vs CIDEr")


def layer_sparsity(plan: SweepPlan, rows: list[dict[str, Any]]) -> dict[str, dict[float, dict[str, float]]]:
    """Per method, per target sparsity: per-layer sparsity of the pruned tensors (from each cell's sparsity.json)."""
    done = {r["cell"] for r in rows if r["status"] in ("completed", "target-missed")}
    out: dict[str, dict[float, dict[str, float]]] = {}
    for cell in plan.cells:
        if cell.method == "dense" or cell.id not in done:
            continue
        data = read_json(plan.folder / cell.run / "sparsity.json")
        tensors = (data or {}).get("tensors") or {}
        layers = {n: float(t["sparsity"]) for n, t in tensors.items() if t.get("pruned", True)}
        if layers:
            out.setdefault(cell.method, {})[cell.sparsity] = layers
    return out


def heatmap_png(labels: list[str], columns: list[str], values: list[list[float]], title: str) -> bytes:
    """Rows × tensors heat map of sparsity (missing values blank), coloured by the kept fraction ``1 − s`` on a log
    scale so 99 % and 99.9 % differ as much as 90 % and 99 % do; each cell is labelled with its sparsity."""
    import numpy as np
    from matplotlib.colors import LogNorm

    fig = _figure(max(6.0, 1.5 + 0.5 * len(columns)), 2.4 + 0.45 * len(labels))
    ax = fig.add_subplot(1, 1, 1)
    kept = np.array([[np.nan if v is None or (isinstance(v, float) and math.isnan(v)) else max(1e-4, 1.0 - v)
                      for v in row] for row in values], dtype=float)
    image = ax.imshow(kept, aspect="auto", cmap="viridis", norm=LogNorm(vmin=1e-4, vmax=1.0), interpolation="nearest")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                ax.text(j, i, f"{v:.1%}" if v < 0.999 else f"{v:.2%}", ha="center", va="center", fontsize=5,
                        color="white" if kept[i, j] < 0.03 else "black")
    ax.set_yticks(range(len(labels)), labels=labels, fontsize=8)
    ax.set_xticks(range(len(columns)), labels=columns, fontsize=6, rotation=90)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="kept fraction 1 − sparsity (log)", fraction=0.03)
    return _png(fig)


def write_plots(plan: SweepPlan, rows: list[dict[str, Any]], methods: list[str] | None = None) -> dict[str, Path]:
    """``plots/cider_vs_sparsity.png``, ``plots/size_vs_cider.png``, ``plots/layer_sparsity_<method>.png`` (each
    method's per-layer sparsity, one row per target, the highest last; only ``methods`` when given) and
    ``plots/layer_sparsity.png`` (every method at the grid's highest sparsity)."""
    plots = plan.folder / "plots"
    paths = {"cider_vs_sparsity": plots / "cider_vs_sparsity.png", "size_vs_cider": plots / "size_vs_cider.png"}
    atomic_write_bytes(paths["cider_vs_sparsity"], cider_vs_sparsity_png(plan, rows))
    atomic_write_bytes(paths["size_vs_cider"], size_vs_cider_png(plan, rows))
    layers = layer_sparsity(plan, rows)
    if not layers:
        return paths
    columns = list(dict.fromkeys(n for per in layers.values() for lay in per.values() for n in lay))
    nan = float("nan")
    for method, per in layers.items():
        if methods is not None and method not in methods:
            continue
        targets = sorted(per)
        values = [[per[s].get(n, nan) for n in columns] for s in targets]
        path = plots / f"layer_sparsity_{method}.png"
        title = f"{method}: per-layer sparsity (rows: target sparsity, highest {targets[-1]:.2%})"
        atomic_write_bytes(path, heatmap_png([f"{s:.2%}" for s in targets], columns, values, title))
        paths[f"layer_sparsity_{method}"] = path
    top = max(plan.sparsity) if plan.sparsity else None
    at_top = [(m, per[top]) for m, per in layers.items() if top in per]
    if at_top and (methods is None or any(m in methods for m, _ in at_top)):
        values = [[lay.get(n, nan) for n in columns] for _, lay in at_top]
        title = f"per-layer sparsity at target {top:.2%}: where each method puts its zeros"
        paths["layer_sparsity"] = plots / "layer_sparsity.png"
        atomic_write_bytes(paths["layer_sparsity"], heatmap_png([m for m, _ in at_top], columns, values, title))
    return paths
