"""The training core's math pinned to values: XE loss (padding, label smoothing) and the LR schedules."""

from __future__ import annotations

import math

import pytest
import torch

from sparsecap_engine.config import OptimConfig
from sparsecap_engine.errors import UsageError
from sparsecap_engine.training.losses import caption_xe
from sparsecap_engine.training.schedules import cosine, make_schedule, noam, step_decay

PAD = 0


def _batch():
    torch.manual_seed(0)
    logprobs = torch.log_softmax(torch.randn(2, 4, 5), -1)
    targets = torch.tensor([[3, 2, 4, PAD], [1, PAD, PAD, PAD]])
    return logprobs, targets


def test_xe_averages_over_real_tokens_only():
    logprobs, targets = _batch()
    real = [(0, 0, 3), (0, 1, 2), (0, 2, 4), (1, 0, 1)]
    expected = -sum(float(logprobs[b, t, k]) for b, t, k in real) / len(real)
    assert float(caption_xe(logprobs, targets, PAD)) == pytest.approx(expected, rel=1e-6)


def test_xe_ignores_whatever_the_model_says_at_pad_positions():
    logprobs, targets = _batch()
    other = logprobs.clone()
    other[0, 3] = torch.log_softmax(torch.tensor([9.0, 0, 0, 0, 0]), -1)
    other[1, 1:] = -50.0
    assert float(caption_xe(other, targets, PAD)) == pytest.approx(float(caption_xe(logprobs, targets, PAD)))
    logprobs.requires_grad_(True)
    caption_xe(logprobs, targets, PAD).backward()
    assert float(logprobs.grad[targets == PAD].abs().sum()) == 0.0


def test_label_smoothing_value():
    logprobs, targets = _batch()
    eps, v = 0.1, 5
    total, n = 0.0, 0
    for b in range(2):
        for t in range(4):
            k = int(targets[b, t])
            if k == PAD:
                continue
            others = [float(logprobs[b, t, j]) for j in range(v) if j != k]
            total += (1 - eps) * -float(logprobs[b, t, k]) + eps * -sum(others) / (v - 1)
            n += 1
    assert float(caption_xe(logprobs, targets, PAD, eps)) == pytest.approx(total / n, rel=1e-6)
    assert float(caption_xe(logprobs, targets, PAD, eps)) != pytest.approx(float(caption_xe(logprobs, targets, PAD)))


def test_cosine_schedule_values_with_warmup():
    f = cosine(1e-3, 1e-5, total=1000, warmup=100)
    assert f(0) == pytest.approx(1e-5) and f(49) == pytest.approx(5e-4) and f(99) == pytest.approx(1e-3)
    assert f(500) == pytest.approx((1e-3 - 1e-5) / 2 + 1e-5)
    assert f(1000) == pytest.approx(1e-5) and f(5000) == pytest.approx(1e-5)
    after = [f(t) for t in range(100, 1001, 50)]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))  # decays, never rises (not inverted)


def test_noam_step_and_constant_schedules():
    f = noam(512, 4000, factor=2.0)
    assert f(0) == pytest.approx(2 * 512**-0.5 * 4000**-1.5)
    assert f(3999) == pytest.approx(2 * 512**-0.5 * 4000**-0.5)  # the peak at t = warm-up
    assert f(15999) == pytest.approx(2 * 512**-0.5 * 16000**-0.5)
    assert f(3999) > f(1999) and f(3999) > f(7999)
    g = step_decay(0.1, every=10, rate=0.5)
    assert (g(0), g(9), g(10), g(25)) == (0.1, 0.1, 0.05, pytest.approx(0.025))
    assert step_decay(0.1, every=0, rate=0.5)(100) == 0.1
    cfg = OptimConfig(schedule="constant", lr=3e-4)
    assert make_schedule(cfg, 100, 512)(77) == 3e-4
    assert make_schedule(OptimConfig(schedule="noam", warmup=10), 100, 64)(9) == pytest.approx(64**-0.5 * 10**-0.5)
    assert math.isclose(make_schedule(OptimConfig(warmup=0), 100, 1)(50), (1e-3 - 1e-5) / 2 + 1e-5)
    with pytest.raises(UsageError, match="unknown schedule"):
        make_schedule(OptimConfig(schedule="linear"), 100, 1)


def test_gradient_clipping_by_norm_and_value_spares_mask_logits():
    from sparsecap_engine.training.gradients import clip_gradients

    w, b, logits = (torch.zeros(3, requires_grad=True) for _ in range(3))
    opt = torch.optim.Adam([{"params": [w, b], "scheduled": True},
                            {"params": [logits], "scheduled": False, "pruning_mask": True}])

    def grads(gw, gb, gl):
        w.grad, b.grad, logits.grad = (torch.tensor(g, dtype=torch.float32) for g in (gw, gb, gl))

    grads([3.0, 0.0, 0.0], [0.0, 4.0, 0.0], [100.0, -100.0, 0.0])
    norm = clip_gradients(opt, 1.0, "norm")
    assert float(norm) == pytest.approx(5.0)  # the global norm over the weights' groups, before clipping
    assert torch.allclose(w.grad, torch.tensor([0.6, 0, 0]), atol=1e-5)
    assert torch.allclose(b.grad, torch.tensor([0, 0.8, 0]), atol=1e-5)
    assert torch.equal(logits.grad, torch.tensor([100.0, -100.0, 0.0]))  # the mask group is not clipped
    grads([3.0, -0.5, 0.0], [0.0, 4.0, -7.0], [100.0, -100.0, 0.0])
    clip_gradients(opt, 1.0, "value")
    assert torch.equal(w.grad, torch.tensor([1.0, -0.5, 0.0])) and torch.equal(b.grad, torch.tensor([0.0, 1.0, -1.0]))
    assert torch.equal(logits.grad, torch.tensor([100.0, -100.0, 0.0]))
    grads([3.0, 0.0, 0.0], [0.0, 4.0, 0.0], [1.0, 0.0, 0.0])
    assert float(clip_gradients(opt, 0.0, "norm")) == pytest.approx(5.0)  # off: measured, untouched
    assert torch.equal(w.grad, torch.tensor([3.0, 0.0, 0.0]))
