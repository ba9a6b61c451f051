"""The supermask recipes: the reference's toy protocol, the density controller, hardening, the paper recipe's faults."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from smp_toy import run_toy  # noqa: E402

from sparsecap_engine.errors import UsageError  # noqa: E402
from sparsecap_engine.pruning.methods import SupermaskMethod  # noqa: E402
from sparsecap_engine.pruning.smp_control import cubic_target, keep_threshold  # noqa: E402

PAPER_TOY = {"recipe": "paper", "mask_lr": 10.0, "sparsity_weight": 120.0}


@pytest.mark.parametrize("steps", [40, 200, 1000])
def test_robust_recipe_lands_on_the_toy_target_with_the_frozen_layer_dense(steps: int):
    r = run_toy(steps)
    assert r["numel"] == 172 and r["frozen_dense"]
    assert r["sparsity"] == pytest.approx(0.8, abs=0.05)
    method = r["method"]
    assert method.hardened_at == round(0.8 * steps)
    # every step follows the schedule (to one weight of 172): no crawl, no stampede, no overshoot
    for step, s, scheduled in method.history:
        assert abs(s - scheduled) <= 1.5 / 172, (step, s, scheduled)
        assert (scheduled == 0.0) == (step <= 0.2 * steps), (step, scheduled)  # dense until ramp_begin
    assert max(r["trace"]) <= 0.8 + 1 / 172


def test_paper_recipe_on_its_toy_protocol_collapses():
    """The measured fault the robust recipe fixes: every logit crosses zero together and 1 weight survives."""
    r = run_toy(40, **PAPER_TOY)
    first = next(i for i, s in enumerate(r["trace"]) if s > 0)
    assert r["trace"][first + 2] > 0.9  # all within three steps
    assert r["sparsity"] > 0.98 and r["logit_mean"][-1] < -15


def test_cubic_target_schedule_values():
    assert cubic_target(0, 1000, 0.9, 0.5) == 0.0
    assert cubic_target(250, 1000, 0.9, 0.5) == pytest.approx(0.9 * (1 - 0.5**3))
    assert cubic_target(500, 1000, 0.9, 0.5) == pytest.approx(0.9)
    assert cubic_target(900, 1000, 0.9, 0.5) == pytest.approx(0.9)
    # the default robust ramp: dense to 0.2 T, then cubic to the target at 0.6 T
    assert cubic_target(200, 1000, 0.9, 0.6, 0.2) == 0.0 and cubic_target(100, 1000, 0.9, 0.6, 0.2) == 0.0
    assert cubic_target(400, 1000, 0.9, 0.6, 0.2) == pytest.approx(0.9 * (1 - 0.5**3))
    assert cubic_target(300, 1000, 0.9, 0.6, 0.2) == pytest.approx(0.9 * (1 - 0.75**3))
    assert cubic_target(600, 1000, 0.9, 0.6, 0.2) == cubic_target(999, 1000, 0.9, 0.6, 0.2) == pytest.approx(0.9)
    # monotone non-decreasing
    vals = [cubic_target(t, 1000, 0.9, 0.5) for t in range(0, 1001, 10)]
    assert all(b >= a for a, b in zip(vals, vals[1:], strict=False))


def test_keep_threshold_keeps_exactly_k_across_tensors():
    torch.manual_seed(0)
    logits = [torch.randn(7, 5), torch.randn(30)]
    n = 65
    for sparsity in (0.0, 0.3, 0.8, 0.99, 0.999):
        tau = keep_threshold(logits, sparsity)
        kept = sum(int((t > tau).sum()) for t in logits)
        assert kept == round((1 - sparsity) * n), sparsity


def test_topk_training_mask_is_the_eval_mask():
    """The robust default: [s > τ] in training as in eval (no sampling noise), exactly the scheduled NNZ."""
    torch.manual_seed(0)
    lin = nn.Linear(100, 100, bias=False)
    m = SupermaskMethod(0.7, total_steps=10)
    assert m.sampling == "topk" and SupermaskMethod(0.7, recipe="paper").sampling == "bernoulli"
    m.attach(lin)
    with torch.no_grad():
        lin.parametrizations.weight.original.fill_(1.0)
        m.logits()[0].normal_()
    lin.train()
    m.before_step(8)  # past the ramp: τ keeps 30 %
    first = (lin.weight != 0).clone()
    m.masks.end_step()
    m.masks.begin_step()
    assert torch.equal(lin.weight != 0, first)  # the same mask at every step: no sampling
    m.masks.end_step()
    assert int(first.sum()) == 3000 and torch.equal(first, m.logits()[0].detach() > m.masks.slots["weight"].shift)
    lin.eval()
    assert torch.equal(lin.weight != 0, first)


def test_training_masks_sample_around_the_threshold():
    """Bernoulli(σ(s − τ)) in training, [s > τ] in eval: the threshold shifts both."""
    torch.manual_seed(0)
    lin = nn.Linear(200, 200, bias=False)
    m = SupermaskMethod(0.5, total_steps=100, sampling="bernoulli")
    m.attach(lin)
    with torch.no_grad():
        lin.parametrizations.weight.original.fill_(1.0)
        m.logits()[0].fill_(3.0)
    slot = m.masks.slots["weight"]
    slot.shift = 3.0 + math.log(3.0)  # σ(s − τ) = σ(−log 3) = 1/4
    lin.train()
    m.masks.begin_step()
    rate = float((lin.weight != 0).float().mean())
    m.masks.end_step()
    assert rate == pytest.approx(0.25, abs=0.01)
    slot.scale = 2.0  # sharpened: σ(2·(−log 3)) = 1/10
    m.masks.begin_step()
    assert float((lin.weight != 0).float().mean()) == pytest.approx(0.1, abs=0.01)
    m.masks.end_step()
    slot.scale = 1.0
    lin.eval()
    assert float((lin.weight != 0).float().mean()) == 0.0  # 3 < τ: pruned in eval
    slot.shift = 2.9
    assert float((lin.weight != 0).float().mean()) == 1.0


@pytest.mark.parametrize("sampling", ["topk", "bernoulli"])
def test_robust_gradient_is_the_caption_loss_straight_through(sampling: str):
    """topk: ∂L/∂s_i = w_i·∂L/∂(w⊙m)_i for kept and pruned weights alike (a pruned weight can come back);
    bernoulli: times σ'(s_i − τ). No sparsity loss term."""
    torch.manual_seed(0)
    lin = nn.Linear(6, 4, bias=False)
    m = SupermaskMethod(0.5, total_steps=10, sampling=sampling)
    m.attach(lin)
    slot = m.masks.slots["weight"]
    with torch.no_grad():
        slot.logits.normal_()
    lin.eval()
    m.before_step(8)  # past the ramp: τ keeps half
    tau = slot.shift
    assert int((slot.logits > tau).sum()) == 12
    assert m.extra_loss(8) is None
    x = torch.randn(3, 6)
    lin(x).sum().backward()
    s, w = slot.logits.detach(), lin.parametrizations.weight.original.detach()
    p = torch.sigmoid(s - tau)
    slope = p * (1 - p) if sampling == "bernoulli" else torch.ones_like(p)
    assert torch.allclose(slot.logits.grad, x.sum(0).expand(4, 6) * w * slope, atol=1e-6)
    assert bool((slot.logits.grad[s <= tau] != 0).all())  # pruned logits still learn
    m.masks.end_step()


def test_robust_auto_lr_and_eps_follow_the_run_length():
    lin = nn.Linear(8, 8)
    for steps in (200, 100_000):
        m = SupermaskMethod(0.9, total_steps=steps)
        m.attach(nn.Linear(8, 8))
        (group,) = m.param_groups()
        assert group["lr"] == pytest.approx(5.0 / (0.1 * steps)) and group["eps"] == 1e-16
    paper = SupermaskMethod(0.9, total_steps=200, recipe="paper")
    paper.attach(lin)
    (group,) = paper.param_groups()
    assert (group["lr"], group["eps"]) == (100.0, 1e-2)


def test_hardening_keeps_exactly_the_top_logits_globally():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 5))
    m = SupermaskMethod(0.8, total_steps=10)
    m.attach(model)
    with torch.no_grad():
        for t in m.logits():
            t.normal_()
    flat = torch.cat([t.detach().reshape(-1) for t in m.logits()])
    keep = round(0.2 * flat.numel())
    threshold = torch.topk(flat, keep).values.min()
    m.harden(7)
    hard = m.masks.hard()
    assert sum(int(v.sum()) for v in hard.values()) == keep
    for t, (name, mask) in zip(m.logits(), hard.items(), strict=True):
        assert torch.equal(mask, t.detach() >= threshold), name
    # after hardening: training uses the fixed mask (no Bernoulli), no sparsity loss, weights masked exactly
    model.train()
    m.before_step(8)
    w = model[0].weight
    assert torch.equal(w != 0, hard["0.weight"] & (model[0].parametrizations.weight.original != 0))
    assert m.extra_loss(8) is None
    m.after_step(8)
    assert m.hardened_at == 7 and m.sparsity() == pytest.approx(1 - keep / flat.numel())


def test_bad_recipe_options_are_usage_errors():
    with pytest.raises(UsageError, match="recipe"):
        SupermaskMethod(0.9, recipe="magic")
    with pytest.raises(UsageError, match="ramp_end"):
        SupermaskMethod(0.9, ramp_end=0.8, harden_at=0.5)
    with pytest.raises(UsageError, match="ramp_begin"):
        SupermaskMethod(0.9, ramp_begin=0.6, ramp_end=0.6)


def test_sharpening_schedule_goes_from_one_to_sharpen_at_the_ramp_end():
    m = SupermaskMethod(0.9, total_steps=100, sharpen=16.0, ramp_begin=0.0, ramp_end=0.5)
    assert m.sharpness(0) == 1.0 and m.sharpness(25) == pytest.approx(4.0) and m.sharpness(50) == 16.0
    assert m.sharpness(90) == 16.0
    m = SupermaskMethod(0.9, total_steps=100, sharpen=16.0)  # the default window: 0.2 T to 0.6 T
    assert m.sharpness(20) == 1.0 and m.sharpness(40) == pytest.approx(4.0) and m.sharpness(60) == 16.0
    assert SupermaskMethod(0.9, total_steps=100).sharpness(50) == 1.0  # off by default
    with pytest.raises(UsageError, match="sharpen"):
        SupermaskMethod(0.9, sharpen=0.5)


def test_layer_floors_keep_every_tensor_alive_and_the_total_exact():
    """A tiny tensor whose logits all sit below the global threshold (an attention scorer, say) still keeps its
    floor; the total stays exactly the target's; without floors the thresholds are the global one."""
    from sparsecap_engine.pruning.smp_control import keep_thresholds, layer_floors

    torch.manual_seed(0)
    big, small = torch.randn(10_000) + 3.0, torch.randn(128) - 3.0  # the small one loses every global comparison
    floors = layer_floors([big.numel(), small.numel()], 0.99, 0.25)
    assert floors == [25, 1]
    taus = keep_thresholds([big, small], 0.99, floors)
    kept = [int((big > taus[0]).sum()), int((small > taus[1]).sum())]
    assert kept[1] == 1 and sum(kept) == round(0.01 * 10_128)
    assert int((small > taus[1]).sum()) == 1 and bool(small.max() > taus[1])  # its best logit
    plain = keep_thresholds([big, small], 0.99)
    assert plain[0] == plain[1] and int((small > plain[1]).sum()) == 0
    assert layer_floors([100, 10], 0.9, 0.0, min_density=0.2) == [20, 2]
    assert keep_thresholds([big, small], 0.0, floors)[0] < float(big.min())  # nothing pruned at sparsity 0


def test_supermask_robust_never_empties_a_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64, bias=False), nn.Linear(64, 1, bias=False))
    m = SupermaskMethod(0.99, total_steps=10, layer_share=0.25)
    m.attach(model)
    with torch.no_grad():
        m.logits()[1].copy_(torch.randn(1, 64) * 1e-3 - 10.0)  # the scorer would lose all to a global threshold
    m.harden(10)
    hard = m.masks.hard()
    assert int(sum(h.sum() for h in hard.values())) == round(0.01 * (64 * 64 + 64))
    assert all(int(h.sum()) >= 1 for h in hard.values())
