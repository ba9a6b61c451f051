"""Plain-text rendering of a sweep's state: the cells and results columns, and the ``monitor SWEEP --once`` snapshot.

The sweep screen's tables take their cells from here too, so the TUI and ``--once`` say the same thing the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsecap_cli.tui.text import fmt, fmt_duration
from sparsecap_engine.sweep_state import CellState, SweepState, SweepSummary, finite_number

CELL_COLUMNS = ("cell", "method", "target", "status", "steps", "time", "message")
RESULT_COLUMNS = ("method", "target", "sparsity", "CIDEr", "BLEU-4", "size", "latency", "wall", "status")
RESULTS_NOTE = "test split, greedy decoding · size: fp16 sparse checkpoint · latency: CPU batch-1 decode vs dense"


def fmt_target(value: float | None, method: str = "") -> str:
    """A planned sparsity: ``95%``, ``97.5%``, ``98.75%``; ``—`` for dense."""
    if value is None or method == "dense":
        return "—"
    return f"{100 * value:.4g}%"


def fmt_sparsity(value: float | None) -> str:
    """A reached sparsity, to a hundredth of a point: ``93.12%``."""
    return "—" if value is None else f"{100 * value:.2f}%"


def fmt_size(n: float | None) -> str:
    """Bytes as ``245.7 kB`` / ``3.46 MB``."""
    if n is None:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def cell_fields(cell: CellState, now: float) -> tuple[str, ...]:
    """One row of the cells table (:data:`CELL_COLUMNS`)."""
    if cell.status == "running" and cell.step is not None:
        total = cell.total_steps or cell.steps
        steps = f"{cell.step:,}/{total:,}" if total else f"{cell.step:,}"
    else:
        steps = f"{cell.steps:,}" if cell.steps is not None else "—"
    message = cell.message
    if cell.status == "running" and not message:  # how it runs, and its run's own status once that ended
        notes = [cell.action] if cell.action not in ("", "run") else []
        if cell.run_status not in (None, "running", "waiting"):
            notes.append(f"run {cell.run_status}")
        message = " · ".join(notes)
    return (
        cell.id,
        cell.method or "—",
        fmt_target(cell.target, cell.method),
        cell.status,
        steps,
        fmt_duration(cell.elapsed_s(now)),
        message,
    )


def result_fields(state: SweepState, row: dict[str, Any]) -> tuple[str, ...]:
    """One row of the results table (:data:`RESULT_COLUMNS`)."""
    method = str(row.get("method") or "—")
    return (
        method,
        fmt_target(finite_number(row.get("target")), method),
        fmt_sparsity(finite_number(row.get("sparsity"))),
        fmt(finite_number(row.get("CIDEr"))),
        fmt(finite_number(row.get("Bleu_4"))),
        fmt_size(finite_number(row.get("size_bytes"))),
        fmt_ratio(state.latency_vs_dense(row)),
        fmt_duration(finite_number(row.get("wall_s"))),
        str(row.get("status") or "—"),
    )


def budget_text(budget: dict[str, Any]) -> str:
    """``dense 600 + fine-tune 200 steps`` from the plan's budget."""
    dense, finetune = budget.get("dense"), budget.get("finetune")
    if isinstance(dense, int | float) and isinstance(finetune, int | float):
        return f"dense {dense:,} + fine-tune {finetune:,} steps"
    return ", ".join(f"{k} {v}" for k, v in budget.items())


def progress_text(state: SweepState) -> str:
    """``4/7 cells done · 1 running · 2 pending · 1 failed`` (statuses with no cell left out)."""
    counts = state.counts()
    order = ["running", "pending", "failed", "target-missed", "interrupted", "skipped"]
    order += [s for s in counts if s not in order and s != "completed"]
    done = f"{state.done}/{len(state.cells)} cells done"
    return " · ".join([done] + [f"{counts[s]} {s}" for s in order if counts[s]])


def header_lines(state: SweepState) -> list[str]:
    head = f"sweep {state.name}  [{state.status}]  {progress_text(state)}"
    if state.message:
        head += f"  {state.message}"
    info = []
    if state.methods:
        info.append("methods " + ", ".join(state.methods))
    if state.sparsity:
        info.append("sparsity " + ", ".join(fmt_target(s) for s in state.sparsity))
    if state.budget:
        info.append("budget " + budget_text(state.budget))
    if state.jobs is not None:
        info.append(f"jobs {state.jobs}" + (f" ({state.launcher})" if state.launcher else ""))
    lines = [head] + (["  " + "  ·  ".join(info)] if info else [])
    problems = [p for p in (state.plan_error, state.results_error) if p]
    if state.malformed:
        problems.append(f"{state.malformed} malformed line{'s' if state.malformed != 1 else ''} in events.jsonl")
    if problems:
        lines.append("  unreadable: " + "; ".join(problems))
    return lines


def table_lines(head: tuple[str, ...], rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell; trailing spaces trimmed."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip() for r in [head, *rows]]


def plot_lines(state: SweepState) -> list[str]:
    """The CIDEr-vs-sparsity series as text: one line per method, the dense line first."""
    series = state.series()
    names = ["dense", *series]
    pad = max(len(n) for n in names)
    dense = state.dense_cider
    lines = [f"  {'dense':<{pad}}  " + (f"{fmt(dense)} (all sparsities)" if dense is not None else "(no result yet)")]
    for method, points in series.items():
        shown = " · ".join(f"{fmt_sparsity(p.sparsity)} → {fmt(p.cider)}" for p in points)
        lines.append(f"  {method:<{pad}}  {shown or '(no results yet)'}")
    return lines


def render_sweep(state: SweepState, now: float) -> str:
    """The ``--once`` text of a sweep: header, cells with status, results, CIDEr vs sparsity."""
    lines = header_lines(state)
    lines += ["", "cells"]
    cells = [cell_fields(c, now) for c in state.cells.values()]
    lines += table_lines(CELL_COLUMNS, cells) if cells else ["  (no cells in plan.json)"]
    lines += ["", f"results  ({RESULTS_NOTE})"]
    rows = [result_fields(state, r) for r in state.result_rows()]
    lines += table_lines(RESULT_COLUMNS, rows) if rows else ["  (no results yet)"]
    lines += ["", "CIDEr vs sparsity", *plot_lines(state)]
    return "\n".join(line.rstrip() for line in lines) + "\n"


SWEEPS_COLUMNS = ("sweep", "status", "cells done", "running", "failed", "missed", "best at top sparsity")


def sweeps_fields(s: SweepSummary) -> tuple[str, ...]:
    """One row of the sweeps list (:data:`SWEEPS_COLUMNS`)."""
    return (s.name, s.status, f"{s.done}/{s.total}", str(s.running), str(s.failed), str(s.missed), s.best or "—")


def render_sweeps(root: Path, sweeps: list[SweepSummary]) -> str:
    """The ``--once`` text of a folder of sweeps: one row per sweep."""
    if not sweeps:
        return f"no sweeps in {root}\n"
    return "\n".join(table_lines(SWEEPS_COLUMNS, [sweeps_fields(s) for s in sweeps], indent="")) + "\n"
