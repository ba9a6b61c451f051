"""Pins found by mutation testing (issue 12, ``benchmarks/mutation.py --area pruning``): exact top-k selection (ties,
k = 0 and 1, bool masks), the −1 score of pruned weights, the class-distribution statistics of surviving weights,
minimum-density floors, the gradual schedule's grid and checks, and the robust supermask's thresholds."""

from __future__ import annotations

import math
import re

import pytest
import torch

from sparsecap_engine.errors import UsageError
from sparsecap_engine.pruning.criteria import (
    GradualSchedule,
    _top_k_flat,
    cubic_sparsity,
    dist_scores,
    magnitude_scores,
    select,
    select_global,
    select_uniform,
    snip_scores,
)
from sparsecap_engine.pruning.smp_control import cubic_target, keep_threshold, keep_thresholds, layer_floors


# ---------------------------------------------------------------------------------------------------------- criteria
def test_pruned_weights_score_exactly_minus_one_with_float_or_bool_masks():
    w = {"a": torch.tensor([[0.5, -2.0], [3.0, -0.1]])}
    g = {"a": torch.tensor([[2.0, 1.0], [-1.0, 4.0]])}
    for mask in (torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[True, False], [True, False]])):
        m = {"a": mask}
        assert torch.equal(magnitude_scores(w, m)["a"], torch.tensor([[0.5, -1.0], [3.0, -1.0]]))
        assert torch.equal(snip_scores(w, g, m)["a"], torch.tensor([[1.0, -1.0], [3.0, -1.0]]))
        d = dist_scores(w, m)["a"]
        assert d[0, 1] == -1.0 and d[1, 1] == -1.0
    assert torch.equal(snip_scores(w, g, {"other": torch.zeros(1)})["a"], torch.tensor([[1.0, 2.0], [3.0, 0.4]]))


def test_dist_scores_standardise_by_the_surviving_weights_only():
    w = {"a": torch.tensor([1.0, 5.0, 100.0, -50.0]), "b": torch.tensor([2.0, 2.0, 5.0])}
    m = {"a": torch.tensor([True, True, False, False]), "b": torch.tensor([True, True, False])}
    d = dist_scores(w, m)
    assert torch.allclose(d["a"], torch.tensor([1.0, 1.0, -1.0, -1.0]))  # μ = 3, σ = 2 over {1, 5}
    assert torch.equal(d["b"], torch.tensor([0.0, 0.0, -1.0]))  # σ = 0: (w − μ) / 1


def test_dist_scores_of_one_or_no_survivor():
    w = {"gone": torch.tensor([4.0, -4.0]), "one": torch.tensor([7.0, 1.0, 2.0]), "next": torch.tensor([1.0, 3.0])}
    m = {"gone": torch.tensor([False, False]), "one": torch.tensor([False, True, False])}
    d = dist_scores(w, m)
    assert torch.equal(d["gone"], torch.tensor([-1.0, -1.0]))
    assert torch.equal(d["one"], torch.tensor([-1.0, 0.0, -1.0]))
    assert torch.allclose(d["next"], torch.tensor([1.0, 1.0]))  # a layer after an emptied one is still scored


def test_top_k_breaks_ties_by_position_and_returns_bool_masks():
    flat = torch.tensor([1.0, 2.0, 2.0, 3.0])
    assert _top_k_flat(flat, 2).tolist() == [False, True, False, True]
    for k, want in ((0, [False] * 4), (4, [True] * 4), (9, [True] * 4)):
        keep = _top_k_flat(flat, k)
        assert keep.dtype == torch.bool and keep.tolist() == want
    many = torch.arange(32.0)
    one = _top_k_flat(many, 1)  # few kept: the partial-sort branch
    assert one.dtype == torch.bool and one.nonzero().flatten().tolist() == [31]


def test_select_global_exact_counts_defaults_and_floors():
    s = {"a": torch.tensor([5.0, 4.0, 3.0, 2.0]), "b": torch.tensor([0.1, 0.2, 0.3, 0.4])}
    sel = select_global(s, 0.5)  # default: no minimum density
    assert sel.masks["a"].tolist() == [True] * 4 and not sel.masks["b"].any() and sel.emptied == ["b"]
    one = select_global(s, 7 / 8)
    assert one.masks["a"].tolist() == [True, False, False, False] and not one.masks["b"].any()
    # floors summing to exactly the budget are allowed; b is guarded (it would keep 0), a keeps exactly its floor
    guarded = select_global(s, 0.5, min_density=0.5)
    assert guarded.masks["a"].tolist() == [True, True, False, False]
    assert guarded.masks["b"].tolist() == [False, False, True, True]
    assert guarded.guarded == {"b": 0} and guarded.emptied == []
    assert guarded.warnings() == ["b: global threshold would keep 0; the --min-density guard kept more"]
    with pytest.raises(UsageError, match="keeps more weights"):
        select_global(s, 0.75, min_density=0.5)
    assert select_global({}, 0.5).masks == {}


def test_select_uniform_and_select_pass_min_density():
    s = {"a": torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1])}
    assert int(select_uniform(s, 0.8).masks["a"].sum()) == 2 and select_uniform(s, 0.8).emptied == []  # no floor
    assert int(select_uniform(s, 0.8, min_density=0.5).masks["a"].sum()) == 5
    empty = select_uniform(s, 1.0)
    assert not empty.masks["a"].any() and empty.emptied == ["a"]
    w = {"a": torch.arange(1.0, 11.0), "b": torch.full((4,), 0.5)}  # b's z-scores are all 0: it loses globally
    assert int(select("uniform", w, 1.0, min_density=0.3).masks["b"].sum()) == 2
    assert int(select("dist", w, 0.5).masks["b"].sum()) == 0
    assert int(select("dist", w, 0.5, min_density=0.5).masks["b"].sum()) == 2
    with pytest.raises(UsageError, match=r"^unknown criterion 'l1'; choose from blind, uniform, dist$"):
        select("l1", w, 0.5)


def test_cubic_sparsity_with_an_empty_ramp_and_at_its_start():
    assert cubic_sparsity(5, 0.1, 0.9, 5, 5) == 0.9 and cubic_sparsity(4, 0.1, 0.9, 5, 5) == 0.1
    assert cubic_sparsity(5, 0.1, 0.9, 5, 15) == pytest.approx(0.1)


def test_gradual_schedule_defaults_and_checks():
    sched = GradualSchedule.scaled(4248, 0.9)  # 4248·1000/113280 = 37.5 exactly: rounds to 38
    assert sched.every == 38 and sched.start == round(4248 / 15)
    odd = GradualSchedule.scaled(101, 0.9, start=0, every=1)
    assert odd.end == 50 and type(odd.end) is int  # end = T // 2 by default
    assert GradualSchedule.scaled(40, 0.9, start=0).every == 1  # at least one step between updates
    for ok in (dict(start=0, end=10, every=1), dict(start=10, end=10, every=5)):
        GradualSchedule.scaled(100, 0.9, **ok)
    for bad in (dict(start=-1, end=10, every=1), dict(start=0, end=10, every=0), dict(start=5, end=4, every=1),
                dict(start=-1, end=-2, every=0)):
        with pytest.raises(UsageError, match=rf"^{re.escape('bad gradual schedule: start')} -?\d+, end -?\d+, every"):
            GradualSchedule.scaled(100, 0.9, **bad)


# ------------------------------------------------------------------------------------------- robust supermask control
def test_cubic_target_of_a_one_step_ramp():
    assert cubic_target(1, 1, 0.9, 1.0) == pytest.approx(0.9)


def test_keep_threshold_at_the_extremes_keeps_all_or_nothing():
    logits = [torch.tensor([0.5, -1.0]), torch.tensor([2.0])]
    assert keep_threshold(logits, 0.0) < -1.0 and keep_threshold(logits, 1.0) >= 2.0


def test_layer_floors_zero_share_and_full_sparsity():
    assert layer_floors([10, 20], 0.9, 0.0) == [0, 0]  # no share and no minimum density: no floors
    assert layer_floors([10, 20], 1.0, 0.5) == [1, 1]  # still at least one each
    assert layer_floors([10, 20], 0.9, 0.0, min_density=0.25) == [3, 5]


def _kept(logits, taus):
    return [int((t > tau).sum()) for t, tau in zip(logits, taus, strict=True)]


def test_keep_thresholds_with_zero_whole_and_partial_floors():
    a = torch.tensor([9.0, 8.0, 7.0, 6.0])
    b = torch.tensor([1.0, 0.5, 0.2])
    c = torch.tensor([5.0, 4.0])
    # b keeps its whole tensor by its floor, a has none, c keeps one: budget 5 − 3 − 1 = 1 more, a's best
    taus = keep_thresholds([a, b, c], 1 - 5 / 9, [0, 3, 1])
    assert _kept([a, b, c], taus) == [1, 3, 1] and taus[1] == -math.inf
    assert taus[0] == 8.0 and taus[2] == 4.0  # a's threshold is the global one; c's keeps its floor
    # budget exactly 0: a (floor 0) keeps nothing and is not sampled (τ = +inf)
    taus = keep_thresholds([a, b, c], 1 - 4 / 9, [0, 3, 1])
    assert _kept([a, b, c], taus) == [0, 3, 1] and taus[0] == math.inf
    # floors above the budget: the floors win
    assert _kept([a, b, c], keep_thresholds([a, b, c], 1 - 2 / 9, [0, 3, 1])) == [0, 3, 1]
    # what is left over is one logit, and the budget takes it; a budget of all the rest keeps everything
    taus = keep_thresholds([torch.tensor([3.0, 1.0])], 0.0, [1])
    assert _kept([torch.tensor([3.0, 1.0])], taus) == [2]
    assert _kept([a, c], keep_thresholds([a, c], 0.0, [1, 1])) == [4, 2]
    with pytest.raises(ValueError):
        keep_thresholds([a, b], 0.5, [1, 1, 1])


# ------------------------------------------------------------------------------------------------------------- masks
def _sm(w, logits, *args):
    from sparsecap_engine.pruning.ste import _Supermask

    return _Supermask.apply(w, logits, *args)


def test_supermask_function_defaults_eval_mask_and_gradients():
    """Defaults: τ = 0, κ = 1, σ' straight-through; ``s = τ`` exactly is pruned; ∂/∂w = g ⊙ m."""
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    s = torch.tensor([0.5, 0.0, -1.0, 2.0], requires_grad=True)
    out, kept = _sm(w, s, False)
    assert out.tolist() == [1.0, 0.0, 0.0, 4.0] and kept.item() == 2.0 and kept.dtype == s.dtype
    g = torch.tensor([1.0, -1.0, 2.0, 0.5])
    (out * g).sum().backward()
    p = torch.sigmoid(s.detach())
    assert torch.allclose(s.grad, g * w.detach() * p * (1 - p))
    assert torch.equal(w.grad, g * torch.tensor([1.0, 0.0, 0.0, 1.0]))


def test_supermask_function_sharpness_and_kept_only_gradients():
    w = torch.tensor([1.0, 2.0, 3.0])
    s = torch.tensor([0.5, -0.25, 1.0], requires_grad=True)
    out, _ = _sm(w, s, False, 0.0, 2.0)  # κ = 2 with τ = 0: σ'(κ s), not σ'(s)
    out.sum().backward()
    p = torch.sigmoid(2 * s.detach())
    assert torch.allclose(s.grad, w * p * (1 - p))
    # only the kept count in the loss (the sparsity term), w needing a gradient too
    w2 = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    s2 = torch.tensor([0.5, -0.25, 1.0], requires_grad=True)
    _, kept = _sm(w2, s2, False)
    kept.backward()
    p = torch.sigmoid(s2.detach())
    assert torch.allclose(s2.grad, p * (1 - p)) and w2.grad is None
    # deterministic top-k (ste): the kept count is a float whose gradient is the identity
    s3 = torch.tensor([0.5, -0.25, 1.0], requires_grad=True)
    _, kept = _sm(torch.ones(3), s3, False, 0.0, 1.0, True)
    assert kept.dtype == torch.float32 and kept.item() == 2.0
    kept.backward()
    assert torch.equal(s3.grad, torch.ones(3))
    # weights learn through a fixed set of logits: ∂/∂w = g ⊙ m, the logits get nothing
    w4 = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    out, _ = _sm(w4, torch.tensor([0.5, -0.25, 1.0]), False)
    out.sum().backward()
    assert torch.equal(w4.grad, torch.tensor([1.0, 0.0, 1.0]))


def test_supermask_hard_fix_and_step_kept():
    from sparsecap_engine.pruning.masks import Supermask

    sm = Supermask(torch.Size([3]), init=0.0)
    assert sm.hard().tolist() == [False, False, False]  # s = τ = 0 is pruned
    sm.fix(torch.tensor([1.0, 0.0, 1.0]))  # a float 0/1 mask is frozen as bool
    assert sm.hard().dtype == torch.bool and sm.hard().tolist() == [True, False, True]
    assert torch.equal(sm(torch.tensor([4.0, 5.0, 6.0])), torch.tensor([4.0, 0.0, 6.0]))
    free = Supermask(torch.Size([3]), init=1.0)
    free(torch.ones(3))  # a forward pass outside a training step
    assert free.step_kept() is None


def test_masks_follow_the_device_they_are_moved_to():
    """On the meta device (no data): a supermask's logits and frozen mask move with ``move_to``; a hardened (fixed)
    supermask's logits stay frozen there (out of training: the optimiser and DDP leave them alone); masks on another
    device than the weight are brought to the weight's device."""
    from sparsecap_engine.pruning.masks import HardMask, Supermask

    meta = torch.device("meta")
    assert HardMask(torch.Size([2, 2]), device=meta).mask.device == meta
    sm = Supermask(torch.Size([2]), init=1.0)
    sm.fix(torch.tensor([True, False]))
    sm.move_to(meta)
    assert sm.logits.device == meta and not sm.logits.requires_grad and sm.logits.is_leaf
    live = Supermask(torch.Size([2]), init=1.0)
    live.move_to(meta)
    assert live.logits.device == meta and live.logits.requires_grad and live.logits.is_leaf
    assert sm.fixed is not None and sm.fixed.device == meta
    cpu_fixed = Supermask(torch.Size([2]), init=1.0)
    cpu_fixed.fix(torch.tensor([True, False]))
    assert cpu_fixed(torch.empty(2, device=meta)).device == meta
    cpu_logits = Supermask(torch.Size([2]), init=1.0).eval()
    with torch.no_grad():
        assert cpu_logits(torch.empty(2, device=meta)).device == meta
    same = Supermask(torch.Size([2]), init=1.0)
    same.move_to(torch.device("cpu"))  # already there: the same logits object
    assert same.logits.device.type == "cpu"


def test_supermask_training_samples_without_grad_follow_shift_and_sharpness():
    """Training mode, no autograd (e.g. a no-grad forward during a step): ``m ~ Bernoulli(σ(κ(s − τ)))``; with
    ``topk`` the mask is ``[s > τ]``."""
    from sparsecap_engine.pruning.masks import Supermask

    torch.manual_seed(0)
    n = 4000
    sm = Supermask(torch.Size([n]), init=0.0).train()
    w = torch.ones(n)
    with torch.no_grad():
        assert 0.45 < float(sm(w).mean()) < 0.55  # σ(0) = 0.5
        sm.shift = 1.0
        assert 0.23 < float(sm(w).mean()) < 0.31  # σ(−1) = 0.27
        sm.scale = 3.0
        assert 0.03 < float(sm(w).mean()) < 0.07  # σ(−3) = 0.047
        sm.shift, sm.scale = 0.0, 1.0
        sm.logits[: n // 2] = 30.0
        sm.logits[n // 2 :] = -30.0
        out = sm(w)
        assert bool(out[: n // 2].all()) and not bool(out[n // 2 :].any())
        sm.logits.fill_(0.1)
        sm.topk = True
        assert bool(sm(w).all())  # deterministic: every s > τ = 0 is kept
        sm.shift = 0.2
        assert not bool(sm(w).any())


def _kth_one_copy(tensors, k, sample):
    from sparsecap_engine.pruning.smp_control import kth_smallest_one_copy

    return kth_smallest_one_copy(torch.cat([t.reshape(-1) for t in tensors]), k, sample)


@pytest.mark.parametrize("variant", ["per-tensor", "one-copy"])
def test_kth_smallest_is_exactly_kthvalue_step_after_step(variant: str):
    """The sampled selection gives torch.kthvalue's value bit for bit: logits drifting step to step, ties, a far
    jump, every rank from the first to the last, a sample that misleads (a pattern with the sample's stride: the full
    selection runs); and near the middle it selects among a few values, not all. Both variants: the CPU's (per
    tensor, no concatenated copy) and the GPU's (one copy, sorts, one host sync), run here on the CPU."""
    from sparsecap_engine.pruning.smp_control import kth_smallest as per_tensor

    kth_smallest = per_tensor if variant == "per-tensor" else _kth_one_copy
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(300, 40, generator=g) + 5.0, torch.randn(1000, generator=g) + 5.0, torch.full((50,), 5.0)]
    sample = 1000  # small tensors take the sampled path too
    n = sum(t.numel() for t in tensors)
    for step in range(60):
        for t in tensors[:2]:
            t.add_(torch.randn(t.shape, generator=g), alpha=0.01)  # a step's drift
        if step == 30:
            tensors[0].sub_(3.0)  # a far jump
        k = (1, n, n // 2)[step] if step < 3 else 1 + (step * 977) % n
        want = float(torch.kthvalue(torch.cat([t.reshape(-1) for t in tensors]), k).values)
        assert kth_smallest(tensors, k, sample) == want, step
    calls = []
    real_kth, real_sort = torch.kthvalue, torch.Tensor.sort
    try:
        torch.kthvalue = lambda x, k: calls.append(x.numel()) or real_kth(x, k)  # type: ignore[assignment]
        torch.Tensor.sort = lambda x, *a, **kw: calls.append(x.numel()) or real_sort(x, *a, **kw)  # type: ignore
        kth_smallest(tensors, n // 2, sample)
        kth_smallest(tensors, n // 2 + 3, sample)
    finally:
        torch.kthvalue, torch.Tensor.sort = real_kth, real_sort  # type: ignore[method-assign]
    assert calls and max(calls) < n / 4  # a selection among a few, not all
    stride = n // sample  # every sampled value is huge, every other one tiny: the bounds mislead
    trap = [torch.where(torch.arange(n) % stride == 0, 100.0, -100.0) + torch.rand(n, generator=g)]
    assert kth_smallest(trap, n // 2, sample) == float(torch.kthvalue(trap[0], n // 2).values)
