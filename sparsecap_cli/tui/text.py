"""Plain-text rendering of a run's state: number formats, sparklines, bars, and the ``monitor --once`` snapshot.

Shared by the TUI widgets and the ``--once`` output (SSH, CI logs), so both say the same thing the same way.
"""

from __future__ import annotations

import math
from pathlib import Path

from sparsecap_engine.humanize import number
from sparsecap_engine.monitor_roots import RunSummary
from sparsecap_engine.monitor_state import RunState, Series

SPARK = "▁▂▃▄▅▆▇█"


def fmt(value: float | int | None, digits: int = 4) -> str:
    """A number in ``digits`` significant digits, never in scientific notation; ``—`` for None."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    text = f"{value:.{digits}g}"
    return number(value, trim=True) if "e" in text and math.isfinite(value) else text


def score(value: float | None) -> str:
    """A metric with 4 decimals (``0.0418``, ``1.3530``), the way ``eval`` and ``train`` print scores."""
    return "—" if value is None else f"{value:.4f}"


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def short_layer_name(name: str, width: int) -> str:
    """A dotted tensor name in ``width`` characters that still tells layers apart: the leading parts shrink to their
    first letter (``decoder.core.att_lstm.weight_ih`` → ``d.c.att_lstm.weight_ih``), then the middle is cut out."""
    if len(name) <= width:
        return name
    parts = name.split(".")
    if len(parts) > 2:
        name = ".".join([p[:1] for p in parts[:-2]] + parts[-2:])
    return middle_elide(name, width)


def middle_elide(text: str, width: int) -> str:
    """``decoder.core.att_lstm.weight_ih`` in ``width`` characters, the middle cut out (``decoder.c…weight_ih``):
    both ends of a layer name say which layer it is, a cut end does not."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def fmt_duration(seconds: float | None) -> str:
    """``1h02m``, ``4m10s``, ``12s``; ``—`` for None."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def sparkline(values: list[float], width: int = 40) -> str:
    """Values as ``▁▂▃▅▇`` characters, bucketed (mean per bucket) to at most ``width`` characters."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return ""
    if len(values) > width:
        n = len(values)
        values = [
            sum(values[i * n // width : (i + 1) * n // width]) / max(1, (i + 1) * n // width - i * n // width)
            for i in range(width)
        ]
    lo, hi = min(values), max(values)
    span = hi - lo
    if span <= 0:
        return SPARK[len(SPARK) // 2] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * len(SPARK)))] for v in values)


def bar(fraction: float | None, width: int = 10) -> str:
    """A left-to-right bar of ``width`` cells with eighth-block resolution."""
    if fraction is None:
        return " " * width
    fraction = min(1.0, max(0.0, fraction))
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    out = "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")
    return out.ljust(width)


def short_path(path: str, run_path: str) -> str:
    """``path`` relative to the run directory when inside it, else its file name (no machine paths in the view)."""
    try:
        return str(Path(path).relative_to(run_path))
    except ValueError:
        return Path(path).name


def progress_text(state: RunState) -> str:
    total = state.total_steps
    if total:
        return f"{state.step:,}/{total:,} ({100 * state.step / total:.0f}%)"
    return f"{state.step:,}"


def checkpoint_text(state: RunState) -> str:
    ck = state.checkpoint
    if not ck:
        return "—"
    best = " ★best" if ck.get("best") else ""
    return f"{Path(ck['path']).name}@{ck['step']:,}{best}"


def status_fields(state: RunState, now: float | None = None) -> list[tuple[str, str]]:
    """The status line as (label, value) pairs: step, epoch, items/s, elapsed, ETA, device, last checkpoint; with
    ``now``, how long ago the last event of a running run came (a hung run shows)."""
    fields = [
        ("step", progress_text(state)),
        ("epoch", fmt(state.epoch, 3)),
        ("items/s", fmt(state.items_per_s)),
        ("elapsed", fmt_duration(state.elapsed_s)),
        ("ETA", fmt_duration(state.eta_s) if state.running else "—"),
        ("device", state.device or "—"),
        ("ckpt", checkpoint_text(state)),
    ]
    if now is not None and state.status in ("running", "stale") and state.last_time is not None:
        fields.insert(4, ("last event", f"{fmt_duration(max(0.0, now - state.last_time))} ago"))
    if state.malformed:
        fields.append(("skipped lines", str(state.malformed)))
    return fields


def curve_summary(name: str, series: Series) -> str:
    """``last 2.345 @ 1,200 · min 1.9 · max 4.1 · 48 points``."""
    finite = [v for v in series.values if math.isfinite(v)]
    if not finite:
        return f"{name}: no data yet"
    return (
        f"{name}  last {fmt(series.last)} @ {series.steps[-1]:,}  ·  min {fmt(min(finite))}  ·  "
        f"max {fmt(max(finite))}  ·  {len(series):,} points"
    )


def render_snapshot(state: RunState, width: int = 40) -> str:
    """The ``--once`` text: header, status, curves as sparklines, sparsity table, samples."""
    lines = [f"run {state.name}  [{state.status}]" + (f"  {state.message}" if state.message else "")]
    info = [state.model_name or "?", state.method or "?"]
    if state.params:
        info.append(f"{state.params:,} params")
    if state.target is not None:
        info.append(f"target sparsity {fmt_pct(state.target)}")
    lines.append("  " + "  ·  ".join(info))
    lines.append("  " + "  ".join(f"{k} {v}" for k, v in status_fields(state)))
    best = f"{fmt(state.best_cider)} @ step {state.best_step:,}" if state.best_cider is not None else "—"
    lines.append(f"  best CIDEr-D {best}")
    lines += ["", "curves"]
    names = state.curve_names()
    pad = max((len(n) for n in names), default=4)
    for name in names:
        series = state.curve(name)
        finite = [v for v in series.values if math.isfinite(v)] if series is not None else []
        if series is None or not finite:
            lines.append(f"  {name:<{pad}}  (no data)")
            continue
        lines.append(
            f"  {name:<{pad}}  {sparkline(series.values, width):<{width}}  last {fmt(series.last)}"
            f"  min {fmt(min(finite))}  max {fmt(max(finite))}  (steps {series.steps[0]:,}–"
            f"{series.steps[-1]:,})"
        )
    lines += ["", *sparsity_lines(state), "", *sample_lines(state)]
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"


def extras_text(extra: dict[str, object]) -> str:
    """The other scalar fields of a sparsity event (``reached yes · nnz 1,234 · all_params 0.85``); method left out."""
    parts = []
    for key, value in extra.items():
        if key == "method":
            continue
        if isinstance(value, bool):
            shown = "yes" if value else "no"
        elif isinstance(value, int | float):
            shown = fmt(value)
        else:
            shown = str(value)
        parts.append(f"{key} {shown}")
    return " · ".join(parts)


def sparsity_lines(state: RunState) -> list[str]:
    sp = state.sparsity
    if sp is None:
        return ["sparsity  (none yet)" if state.target is not None else "sparsity  (no sparsity events: dense run)"]
    lines = [
        f"sparsity  overall {fmt_pct(sp.overall)}  target {fmt_pct(state.target)}  (step {sp.step:,}, "
        f"{len(sp.layers)} layers)"
    ]
    if sp.extra and extras_text(sp.extra):
        lines.append(f"  {extras_text(sp.extra)}")
    pad = max((len(n) for n in sp.layers), default=5)
    for name, value in sp.layers.items():
        lines.append(f"  {name:<{pad}}  {fmt_pct(value):>6}  {bar(value, 20)}")
    return lines


def sample_lines(state: RunState) -> list[str]:
    if not state.samples:
        return ["samples  (none yet)"]
    lines = [f"samples  (step {state.samples_step:,})"]
    for i, item in enumerate(state.samples, 1):
        image = Path(str(item.get("image", ""))).name or str(item.get("image_id", "?"))
        lines.append(f"  {i}. {image}")
        lines.append(f"     caption: {item.get('caption', '')}")
        for ref in item.get("refs") or []:
            lines.append(f"     ref:     {ref}")
    return lines


def render_runs(root: Path, runs: list[RunSummary]) -> str:
    """The ``--once`` text for a root of runs: one row per run."""
    if not runs:
        return f"no runs in {root}\n"
    head = ("run", "status", "model", "method", "target", "step", "best CIDEr-D")
    rows = [head] + [
        (
            r.name,
            r.status,
            r.model or "—",
            r.method or "—",
            fmt_pct(r.target),
            f"{r.step:,}" + (f"/{r.total_steps:,}" if r.total_steps else ""),
            fmt(r.best_cider),
        )
        for r in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n" for row in rows)
