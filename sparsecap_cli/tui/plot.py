"""A line chart in braille characters (2×4 dots per cell) with a y axis and an x axis of steps (rich Text, no Textual).

``braille_chart(steps, values, width, height)`` returns the text lines of a chart that fits ``width × height`` cells;
the TUI's chart widget colours them. ``braille_lines`` draws several series on shared axes (the sweep's
CIDEr-vs-sparsity plot) and says which series owns each cell, so the widget colours each line. Long series are
reduced to the min/max of each dot column, so 100,000 points draw as fast as 100.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rich.text import Text

from sparsecap_cli.tui.text import fmt

# bit of each dot in a braille cell, indexed [row][column]
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


@dataclass
class Chart:
    """Lines of a chart: ``axis`` (y labels + axis) and ``plot`` (braille) side by side, then x-axis lines."""

    y_labels: list[str]
    plot: list[str]
    x_axis: str
    x_labels: str


def _column_ranges(
    xs: np.ndarray, ys: np.ndarray, cols: int, x_span: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per dot column the lowest and highest y (NaN where the column holds no point); x from ``x_span``."""
    x0, x1 = x_span
    span = x1 - x0 if x1 > x0 else 1.0
    col = np.clip(((xs - x0) / span * (cols - 1)).round().astype(np.int64), 0, cols - 1)
    lo = np.full(cols, np.inf)
    hi = np.full(cols, -np.inf)
    np.minimum.at(lo, col, ys)
    np.maximum.at(hi, col, ys)
    empty = ~np.isfinite(lo)
    lo[empty] = np.nan
    hi[empty] = np.nan
    return lo, hi


def _fill_gaps(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation through empty columns between points (sparse series draw as lines, not dots)."""
    have = np.flatnonzero(~np.isnan(lo))
    if len(have) < 2:
        return lo, hi
    idx = np.arange(have[0], have[-1] + 1)
    mid = (lo[have] + hi[have]) / 2
    interp = np.interp(idx, have, mid)
    gaps = np.isnan(lo[idx])
    lo[idx[gaps]] = interp[gaps]
    hi[idx[gaps]] = interp[gaps]
    return lo, hi


def y_range(values: np.ndarray) -> tuple[float, float]:
    """The range the y axis spans: the data's, widened when flat."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        pad = abs(hi) * 0.1 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def _raster(
    xs: np.ndarray,
    ys: np.ndarray,
    x_span: tuple[float, float],
    y_span: tuple[float, float],
    plot_w: int,
    plot_h: int,
    markers: bool = False,
) -> np.ndarray:
    """The braille bits (``plot_h × plot_w``) of one line through the points, on the given axis ranges.
    ``markers`` draws each point as a 2×2 block of dots."""
    cols, rows = plot_w * 2, plot_h * 4
    lo_v, hi_v = y_span
    lo, hi = _column_ranges(xs, ys, cols, x_span)
    lo, hi = _fill_gaps(lo, hi)
    # connect neighbouring columns so steep segments stay continuous
    prev_lo, prev_hi = np.roll(lo, 1), np.roll(hi, 1)
    prev_lo[0], prev_hi[0] = lo[0], hi[0]
    valid = ~np.isnan(lo) & ~np.isnan(prev_lo)
    lo = np.where(valid & (lo > prev_hi), prev_hi, lo)
    hi = np.where(valid & (hi < prev_lo), prev_lo, hi)

    def to_row(v: np.ndarray) -> np.ndarray:  # dot row 0 at the top
        frac = (v - lo_v) / (hi_v - lo_v)
        return np.clip(((1 - frac) * (rows - 1)).round(), 0, rows - 1)

    grid = np.zeros((plot_h, plot_w), dtype=np.int64)

    def dot(r: int, c: int) -> None:
        cell_y, dot_y = divmod(r, 4)
        cell_x, dot_x = divmod(c, 2)
        grid[cell_y, cell_x] |= _DOTS[dot_y][dot_x]

    top, bottom = to_row(hi), to_row(lo)
    for c in np.flatnonzero(~np.isnan(lo)):
        for r in range(int(top[c]), int(bottom[c]) + 1):
            dot(r, int(c))
    if markers:
        x0, x1 = x_span
        span = x1 - x0 if x1 > x0 else 1.0
        at_cols = ((xs - x0) / span * (cols - 1)).round().astype(np.int64)
        for x, r in zip(at_cols, to_row(ys).astype(np.int64), strict=True):
            c0, r0 = min(max(int(x), 0), cols - 2), min(int(r), rows - 2)
            for dr in (0, 1):
                for dc in (0, 1):
                    dot(r0 + dr, c0 + dc)
    return grid


def _y_axis(labels: list[str], plot_h: int, label_w: int) -> list[str]:
    """Top, middle (when tall enough) and bottom labels, right-aligned before the axis."""
    y_labels = [""] * plot_h
    y_labels[0], y_labels[-1] = labels[0], labels[2]
    if plot_h >= 5:
        y_labels[plot_h // 2] = labels[1]
    return [s.rjust(label_w) + (" ┤" if s else " │") for s in y_labels]


def _x_labels(left: str, mid: str | None, right: str, label_w: int, plot_w: int) -> str:
    """Left label under the origin, the right one flush with the end, the middle one centred when it fits."""
    x_labels = " " * (label_w + 2) + left
    if mid is not None:
        mid_at = label_w + 2 + plot_w // 2 - len(mid) // 2
        if mid_at > len(x_labels) + 1 and mid_at + len(mid) + 1 < label_w + 2 + plot_w - len(right):
            x_labels = x_labels.ljust(mid_at) + mid
        x_labels = x_labels.ljust(label_w + 2 + plot_w - len(right)) + right
    return x_labels


def braille_chart(steps: list[int], values: list[float], width: int, height: int) -> Chart | None:
    """A chart of ``values`` over ``steps`` filling ``width × height`` cells (None when too small or no data)."""
    if not values or width < 12 or height < 3:
        return None
    ys = np.asarray(values, dtype=np.float64)
    xs = np.asarray(steps, dtype=np.float64)
    ok = np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    if not len(ys):
        return None
    lo_v, hi_v = y_range(ys)
    labels = [fmt(hi_v), fmt((hi_v + lo_v) / 2), fmt(lo_v)]
    label_w = max(len(s) for s in labels)
    plot_w, plot_h = width - label_w - 2, height - 2
    if plot_w < 4 or plot_h < 1:
        return None
    grid = _raster(xs, ys, (xs[0], xs[-1]), (lo_v, hi_v), plot_w, plot_h)
    plot = ["".join(chr(0x2800 + int(b)) for b in row) for row in grid]
    x_axis = " " * label_w + " └" + "─" * plot_w
    first, last = int(xs[0]), int(xs[-1])
    mid = f"{(first + last) // 2:,}" if first != last else None
    x_labels = _x_labels(f"{first:,}", mid, f"{last:,}", label_w, plot_w)
    return Chart(_y_axis(labels, plot_h, label_w), plot, x_axis, x_labels)


@dataclass
class MultiChart(Chart):
    """A chart of several lines: ``owner[row][col]`` is the index of the series drawn in that cell (-1: none; where
    lines share a cell, the later series wins)."""

    owner: list[list[int]]


def braille_lines(
    series: list[tuple[list[float], list[float]]],
    width: int,
    height: int,
    x_span: tuple[float, float] | None = None,
    x_fmt: Callable[[float], str] = lambda v: f"{v:g}",
    markers: list[bool] | None = None,
) -> MultiChart | None:
    """Several ``(xs, ys)`` lines on shared axes (x over ``x_span`` widened to the data, y over all values), in
    ``width × height`` cells; None when too small or without data. ``markers[i]`` marks series ``i``'s points."""
    if width < 12 or height < 3:
        return None
    arrays = []
    for xs, ys in series:
        x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        order = np.argsort(x[ok], kind="stable")
        arrays.append((x[ok][order], y[ok][order]))
    all_x = np.concatenate([x for x, _ in arrays] + [np.asarray(x_span or (), dtype=np.float64)])
    all_y = np.concatenate([y for _, y in arrays])
    if not len(all_y):
        return None
    x0, x1 = float(all_x.min()), float(all_x.max())
    if x1 - x0 <= 1e-12 * max(1.0, abs(x1)):
        pad = abs(x1) * 0.01 or 1.0
        x0, x1 = x0 - pad, x1 + pad
    lo_v, hi_v = y_range(all_y)
    labels = [fmt(hi_v), fmt((hi_v + lo_v) / 2), fmt(lo_v)]
    label_w = max(len(s) for s in labels)
    plot_w, plot_h = width - label_w - 2, height - 2
    if plot_w < 4 or plot_h < 1:
        return None
    bits = np.zeros((plot_h, plot_w), dtype=np.int64)
    owner = np.full((plot_h, plot_w), -1, dtype=np.int64)
    for i, (x, y) in enumerate(arrays):
        if not len(y):
            continue
        mark = bool(markers[i]) if markers is not None and i < len(markers) else False
        grid = _raster(x, y, (x0, x1), (lo_v, hi_v), plot_w, plot_h, markers=mark)
        bits |= grid
        owner[grid != 0] = i
    plot = ["".join(chr(0x2800 + int(b)) for b in row) for row in bits]
    x_axis = " " * label_w + " └" + "─" * plot_w
    x_labels = _x_labels(x_fmt(x0), x_fmt((x0 + x1) / 2), x_fmt(x1), label_w, plot_w)
    return MultiChart(_y_axis(labels, plot_h, label_w), plot, x_axis, x_labels, owner.tolist())


def chart_text(chart: MultiChart, styles: Sequence[str]) -> Text:
    """A :class:`MultiChart` as rich Text: each braille cell in the style of the series drawn there."""
    text = Text(no_wrap=True, overflow="crop")
    for label, row, owners in zip(chart.y_labels, chart.plot, chart.owner, strict=True):
        text.append(label, "dim")
        for ch, owner in zip(row, owners, strict=True):
            text.append(ch, styles[owner] if owner >= 0 else "")
        text.append("\n")
    text.append(chart.x_axis + "\n", "dim")
    text.append(chart.x_labels, "dim")
    return text
