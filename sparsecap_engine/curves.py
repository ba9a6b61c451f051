"""Curve transforms for the monitor's views (one run or several compared): EMA smoothing, the last part of a run,
a log scale. Pure functions over ``(steps, values)`` lists; NaN and inf are gaps, never errors."""

from __future__ import annotations

import math
from collections.abc import Sequence

#: the smoothing weights the monitor cycles through (0 = raw), as in TensorBoard and W&B
SMOOTHING = (0.0, 0.6, 0.9, 0.99)
#: the shares of the run the monitor zooms to, cycling (1 = the whole run)
ZOOM = (1.0, 0.5, 0.25, 0.1)


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing: ``s_t = w·s_{t−1} + (1 − w)·x_t``, divided by
    ``1 − w^n`` after ``n`` finite points, so the first point is itself. Non-finite points stay as they are and do
    not move the average; ``weight`` 0 returns the values unchanged."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out: list[float] = []
    acc, n = 0.0, 0
    for x in values:
        x = float(x)
        if not math.isfinite(x):
            out.append(x)
            continue
        n += 1
        acc = weight * acc + (1.0 - weight) * x
        out.append(acc / (1.0 - weight**n) if weight else x)
    return out


Points = tuple[Sequence[int], Sequence[float]]


def tail(steps: Sequence[int], values: Sequence[float], share: float) -> tuple[list[int], list[float]]:
    """The points in the last ``share`` of the step range (``share`` 1: all of them; at least the last point)."""
    return tail_many([(steps, values)], share)[0]


def tail_many(series: Sequence[Points], share: float) -> list[tuple[list[int], list[float]]]:
    """:func:`tail` of several runs on one shared step axis: the cut is taken over all of their steps."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"zoom share must be in (0, 1], got {share}")
    all_steps = [x for steps, _ in series for x in steps]
    cut = max(all_steps) - share * (max(all_steps) - min(all_steps)) if all_steps and share < 1.0 else -math.inf
    out = []
    for steps, values in series:
        kept = [(s, v) for s, v in zip(steps, values, strict=True) if s >= cut]
        out.append(([s for s, _ in kept], [v for _, v in kept]))
    return out


def log10_positive(values: Sequence[float]) -> list[float]:
    """``log10`` of each positive value; zero, negative and non-finite values become NaN (a gap in the plot)."""
    return [math.log10(v) if math.isfinite(v) and v > 0 else math.nan for v in map(float, values)]


def overlay(
    curves: Sequence[Points | None], smoothing: float = 0.0, share: float = 1.0, log: bool = False
) -> list[tuple[list[int], list[float]]]:
    """Several runs' curves made ready to draw on shared axes: each smoothed over its whole length (EMA), then cut
    to the last ``share`` of the common step range, then on a log10 scale when ``log``. A missing curve is empty."""
    smoothed = [(list(c[0]), ema(c[1], smoothing)) if c is not None else ([], []) for c in curves]
    cut = tail_many(smoothed, share)
    return [(steps, log10_positive(values)) if log else (steps, values) for steps, values in cut]
