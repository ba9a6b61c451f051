"""Curve transforms behind the monitor's compare view: EMA smoothing, zoom to the end of the run, log scale."""

from __future__ import annotations

import math

import pytest

from sparsecap_engine.curves import ema, log10_positive, overlay, tail, tail_many


def test_ema_is_tensorboards_debiased_average():
    assert ema([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    out = ema([2.0, 4.0, 4.0], 0.5)
    assert out[0] == 2.0  # debiased: the first point is itself, not (1 − w)·x
    assert out[1] == pytest.approx((0.5 * 0.5 * 2 + 0.5 * 4) / (1 - 0.25))  # (0.5·1 + 2) / 0.75 = 10/3
    assert out[2] == pytest.approx((0.5 * (0.5 * 1 + 2) + 2) / (1 - 0.125))
    constant = ema([3.0] * 50, 0.99)
    assert all(v == pytest.approx(3.0) for v in constant)  # a flat curve stays flat at every weight
    noisy = ema([0.0, 10.0] * 50, 0.9)
    assert 3.0 < noisy[-1] < 7.0 and max(noisy[10:]) - min(noisy[10:]) < 3.0  # smoothed: the swing shrinks


def test_ema_skips_gaps_and_refuses_bad_weights():
    out = ema([1.0, math.nan, 3.0], 0.5)
    assert out[0] == 1.0 and math.isnan(out[1])
    assert out[2] == pytest.approx((0.5 * 0.5 + 1.5) / 0.75)  # the NaN did not count as a point
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError):
            ema([1.0], bad)


def test_tail_keeps_the_last_share_of_the_step_range():
    steps, values = list(range(0, 101, 10)), [float(s) for s in range(0, 101, 10)]
    assert tail(steps, values, 1.0) == (steps, values)
    assert tail(steps, values, 0.25) == ([80, 90, 100], [80.0, 90.0, 100.0])  # step ≥ 100 − 25
    assert tail(steps, values, 0.01) == ([100], [100.0])
    # several runs share one axis: the cut comes from all steps, so a short run may vanish
    short, long = ([0, 10], [1.0, 2.0]), ([0, 50, 100], [1.0, 2.0, 3.0])
    assert tail_many([short, long], 0.5) == [([], []), ([50, 100], [2.0, 3.0])]
    with pytest.raises(ValueError):
        tail(steps, values, 0.0)


def test_log_scale_and_overlay_order():
    assert log10_positive([100.0, 1.0, 0.0, -1.0])[:2] == [2.0, 0.0]
    assert all(math.isnan(v) for v in log10_positive([0.0, -1.0, math.inf]))
    a = ([0, 1, 2, 3], [8.0, 4.0, 2.0, 1.0])
    out = overlay([a, None], smoothing=0.0, share=0.5, log=True)
    assert out[1] == ([], [])
    assert out[0][0] == [2, 3] and out[0][1] == pytest.approx([math.log10(2.0), 0.0])
    # smoothing runs over the whole curve before the zoom: the zoomed points remember the earlier ones
    smoothed = overlay([a], smoothing=0.5, share=0.5)[0][1]
    assert smoothed == pytest.approx(ema(a[1], 0.5)[2:]) and smoothed[0] > 2.0
