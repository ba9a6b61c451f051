"""A line chart in braille characters (2×4 dots per cell) with a y axis and an x axis of steps. No UI framework here.

``braille_chart(steps, values, width, height)`` returns the text lines of a chart that fits ``width × height`` cells;
the TUI's chart widget colours them. Long series are reduced to the min/max of each dot column, so 100,000 points
draw as fast as 100.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def _column_ranges(xs: np.ndarray, ys: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Per dot column the lowest and highest y (NaN where the column holds no point)."""
    x0, x1 = xs[0], xs[-1]
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
    cols, rows = plot_w * 2, plot_h * 4
    lo, hi = _column_ranges(xs, ys, cols)
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
    top, bottom = to_row(hi), to_row(lo)
    for c in np.flatnonzero(~np.isnan(lo)):
        cell_x, dot_x = divmod(int(c), 2)
        for r in range(int(top[c]), int(bottom[c]) + 1):
            cell_y, dot_y = divmod(r, 4)
            grid[cell_y, cell_x] |= _DOTS[dot_y][dot_x]
    plot = ["".join(chr(0x2800 + int(b)) for b in row) for row in grid]

    y_labels = [""] * plot_h
    y_labels[0], y_labels[-1] = labels[0], labels[2]
    if plot_h >= 5:
        y_labels[plot_h // 2] = labels[1]
    y_labels = [s.rjust(label_w) + (" ┤" if s else " │") for s in y_labels]

    x_axis = " " * label_w + " └" + "─" * plot_w
    first, last = int(xs[0]), int(xs[-1])
    left, right = f"{first:,}", f"{last:,}"
    x_labels = " " * (label_w + 2) + left
    if first != last:
        mid = f"{(first + last) // 2:,}"
        mid_at = label_w + 2 + plot_w // 2 - len(mid) // 2
        if mid_at > len(x_labels) + 1 and mid_at + len(mid) + 1 < label_w + 2 + plot_w - len(right):
            x_labels = x_labels.ljust(mid_at) + mid
        x_labels = x_labels.ljust(label_w + 2 + plot_w - len(right)) + right
    return Chart(y_labels, plot, x_axis, x_labels)
