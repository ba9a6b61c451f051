"""Pins found by mutation testing (issue 12, ``benchmarks/mutation.py --area training``): XE loss edge cases, every
schedule as ``make_schedule`` builds it from a config, warm-up boundaries, and clipping that is off when asked."""

from __future__ import annotations

import math

import pytest
import torch

from sparsecap_engine.config import OptimConfig
from sparsecap_engine.errors import UsageError
from sparsecap_engine.training.gradients import clip_gradients
from sparsecap_engine.training.losses import caption_xe
from sparsecap_engine.training.schedules import cosine, make_schedule, noam, step_decay

PAD = 0


def test_xe_of_a_single_real_token_is_its_negative_log_prob():
    logprobs = torch.log_softmax(torch.tensor([[[0.0, 1.0, 2.0, 0.5], [3.0, 0.0, 0.0, 0.0]]]), -1)
    targets = torch.tensor([[2, PAD]])
    assert float(caption_xe(logprobs, targets, PAD)) == pytest.approx(-float(logprobs[0, 0, 2]), rel=1e-6)
    assert float(caption_xe(logprobs, torch.tensor([[PAD, PAD]]), PAD)) == 0.0  # nothing to average: 0, not NaN


def test_xe_without_smoothing_ignores_impossible_classes():
    """A model may give −inf to classes it can never emit; without smoothing only the target's log p counts."""
    logprobs = torch.log_softmax(torch.tensor([[[0.0, 1.0, -math.inf, 2.0]]]), -1)
    targets = torch.tensor([[3]])
    loss = caption_xe(logprobs, targets, PAD, smoothing=0.0)
    assert math.isfinite(float(loss)) and float(loss) == pytest.approx(-float(logprobs[0, 0, 3]))


def test_cosine_warmup_ends_exactly_at_the_warmup_step():
    f = cosine(1e-3, 1e-5, total=1000, warmup=100)
    assert f(100) == pytest.approx((1e-3 - 1e-5) * (1 + math.cos(math.pi * 0.1)) / 2 + 1e-5)
    assert f(100) < 1e-3


def test_cosine_of_a_one_step_run_reaches_the_floor_after_that_step():
    f = cosine(1e-3, 1e-5, total=1)
    assert f(0) == pytest.approx(1e-3) and f(1) == pytest.approx(1e-5)


def test_noam_default_factor_is_one():
    assert noam(512, 4000)(3999) == pytest.approx(512**-0.5 * 4000**-0.5)


def test_step_decay_every_single_step():
    g = step_decay(0.1, every=1, rate=0.5)
    assert (g(0), g(1), g(3)) == (0.1, 0.05, pytest.approx(0.0125))


def test_make_schedule_passes_every_config_field():
    cos = make_schedule(OptimConfig(schedule="cosine", lr=2e-3, lr_min=0.0, warmup=10), 110, 8)
    assert cos(0) == pytest.approx(2e-4) and cos(9) == pytest.approx(2e-3)  # the config's warm-up is applied
    assert cos(55) == pytest.approx(1e-3)  # the cosine runs over all steps (t / T), warm-up included
    nm = make_schedule(OptimConfig(schedule="noam", warmup=10, noam_factor=3.0), 100, 64)
    assert nm(0) == pytest.approx(3 * 64**-0.5 * 10**-1.5) and nm(9) == pytest.approx(3 * 64**-0.5 * 10**-0.5)
    assert make_schedule(OptimConfig(schedule="noam", warmup=0), 100, 64)(0) == pytest.approx(64**-0.5)  # warm-up ≥ 1
    st = make_schedule(OptimConfig(schedule="step", lr=0.4, step_every=5, step_rate=0.5), 100, 64)
    assert (st(0), st(4), st(5), st(12)) == (0.4, 0.4, 0.2, 0.1)


def test_unknown_schedule_lists_the_choices():
    with pytest.raises(UsageError, match="choose from cosine, noam, step, constant"):
        make_schedule(OptimConfig(schedule="linear"), 100, 1)


def test_clipping_covers_groups_without_the_scheduled_flag_and_value_zero_is_off():
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)  # a plain optimiser: its group is the model's weights
    w.grad = torch.tensor([3.0, 4.0])
    assert float(clip_gradients(opt, 1.0, "norm")) == pytest.approx(5.0)
    assert torch.allclose(w.grad, torch.tensor([0.6, 0.8]))
    w.grad = torch.tensor([3.0, -4.0])
    clip_gradients(opt, 0.0, "value")  # 0 = off, also by value
    assert torch.equal(w.grad, torch.tensor([3.0, -4.0]))
