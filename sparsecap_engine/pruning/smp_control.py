"""The robust supermask recipe's sparsity control: a cubic target schedule met exactly by a global logit threshold.

The reference SMP reaches its target through a loss ``λ·(1 − a_t)·|s_target − S|`` with a fixed ``λ``. Its gradient
per mask logit is ``λ·σ'(s)/N``: with ``N`` masked weights it crawls on a 2 M-weight model (Adam with eps 1e-2 turns
it into an update of ``lr·g/eps ≈ 1e-3``: 0.01 % sparsity after 400 steps) and stampedes on a 172-weight toy (every
logit crosses zero on the same step, 0.994 for a target of 0.8). A feedback controller on ``λ`` (tried first) tracks
the schedule until the logits cross zero in a clump, then overshoots (0.994 for 0.975), and pruned logits, whose
weights no longer learn, do not come back.

So the robust recipe keeps SMP's learnt mask logits, Bernoulli sampling and straight-through gradients, and sets the
sparsity with one global threshold instead of a loss: at step ``t``, ``τ_t`` is the logit quantile that keeps exactly
the scheduled density ``1 − s*(t)``, masks are ``Bernoulli(σ(s − τ_t))`` in training and ``[s > τ_t]`` in eval, and

    s*(t) = s_f · (1 − (1 − x)³),  x = clamp((t − b·T) / ((e − b)·T), 0, 1)     (Zhu & Gupta's cubic shape)

with ``b = ramp_begin`` (default 0.2: the weights and logits learn dense first) and ``e = ramp_end`` (0.6).

Nothing depends on ``N``, on the gradient scale or on the run length, and the sparsity is the schedule's at every step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def cubic_target(step: int, total_steps: int, target: float, ramp_end: float, ramp_begin: float = 0.0) -> float:
    """``s*(t)``: 0 until ``ramp_begin · T``, ``target`` from ``ramp_end · T`` on, cubic in between."""
    begin = ramp_begin * total_steps
    end = max(1.0, ramp_end * total_steps - begin)
    x = min(1.0, max(0.0, step - begin) / end)
    return target * (1.0 - (1.0 - x) ** 3)


#: values in the strided sample of :func:`kth_smallest`, and the sample-rank margin (standard deviations) of its bounds
SAMPLE, SIGMAS = 500_000, 6.0


def kth_smallest(tensors: list[Tensor], k: int, sample: int = SAMPLE) -> float:
    """The exact k-th smallest value (1-based) over many tensors (the mask logits): bit for bit the value
    ``torch.kthvalue(torch.cat(...), k)`` gives, without a selection over every value.

    ``torch.kthvalue`` over all of them needs one concatenated copy and a selection over every value: about 1 s per
    step for the 53 M logits of ``ud-paper``, half a dense training step. Instead (Floyd and Rivest's sampling
    selection): a strided sample of ``sample`` values gives two bounds that hold the k-th value with near certainty
    (± ``SIGMAS`` standard deviations of the sample rank); the values below the lower bound are counted, the few
    between the bounds gathered, and the k-th value is the (k − below)-th of those whenever it lies there — checked
    exactly; when the sample misled, the full selection runs. A few elementwise passes: about 0.1 s for ``ud-paper``.
    """
    flat = [t.detach().reshape(-1).float() for t in tensors]
    if flat and flat[0].device.type != "cpu":
        return kth_smallest_one_copy(torch.cat(flat), k, sample)
    n = sum(f.numel() for f in flat)
    stride = n // sample
    if stride >= 4:
        picked = torch.cat([f[::stride] for f in flat])
        size = picked.numel()
        lo_rank, hi_rank = sample_bounds(k, n, size)
        lo = float(torch.kthvalue(picked, lo_rank).values) if lo_rank >= 1 else -math.inf
        hi = float(torch.kthvalue(picked, hi_rank).values) if hi_rank <= size else math.inf
        below = sum(int(torch.count_nonzero(f < lo)) for f in flat)
        if below < k:
            inside = [f[(f >= lo) & (f <= hi)] for f in flat]
            if k <= below + sum(x.numel() for x in inside):
                return float(torch.kthvalue(torch.cat(inside), k - below).values)
    return float(torch.kthvalue(torch.cat(flat), k).values)


def sample_bounds(k: int, n: int, size: int) -> tuple[int, int]:
    """The 1-based ranks, in a sample of ``size`` of ``n`` values, of two bounds that hold the k-th smallest value
    with near certainty: its expected sample rank ± ``SIGMAS`` standard deviations (and 32 ranks)."""
    p = k / n
    spread = SIGMAS * math.sqrt(size * p * (1.0 - p)) + 32.0
    return math.floor(p * size - spread), math.ceil(p * size + spread)


def kth_smallest_one_copy(values: Tensor, k: int, sample: int = SAMPLE) -> float:
    """:func:`kth_smallest` on one flat tensor, for a GPU: the same sampled selection, with every step on the device
    and sorts in place of ``kthvalue`` (which selects in one thread block per row there: milliseconds for 500 k values).
    One concatenated copy costs a GPU almost nothing; a host sync per tensor (a count, a masked gather) is what made
    the update 25–43 ms per step on an H200, half of the supermask step's overhead."""
    n = values.numel()
    stride = n // sample
    if stride >= 4:
        picked = values[::stride].sort().values
        size = picked.numel()
        lo_rank, hi_rank = sample_bounds(k, n, size)
        lo = picked[lo_rank - 1] if lo_rank >= 1 else values.new_tensor(-math.inf)
        hi = picked[hi_rank - 1] if hi_rank <= size else values.new_tensor(math.inf)
        below = int(torch.count_nonzero(values < lo))  # the one sync of the common case, with the gather's
        if below < k:
            inside = values[(values >= lo) & (values <= hi)]
            if k <= below + inside.numel():
                return float(inside.sort().values[k - below - 1])
    return float(values.sort().values[k - 1])


def keep_threshold(logits: list[Tensor], sparsity: float) -> float:
    """``τ`` such that exactly ``round((1 − sparsity)·N)`` logits are ``> τ`` (ties aside), over all tensors
    (found by :func:`kth_smallest`'s sampling selection)."""
    n = sum(t.numel() for t in logits)
    keep = int(round((1.0 - sparsity) * n))
    if keep >= n:
        return float(torch.stack([t.detach().min() for t in logits]).min()) - 1.0  # one host sync
    if keep <= 0:
        return float(torch.stack([t.detach().max() for t in logits]).max()) + 1.0
    return kth_smallest(logits, n - keep)


def layer_floors(numels: list[int], sparsity: float, share: float, min_density: float = 0.0) -> list[int]:
    """Logits each tensor keeps whatever the global threshold says: ``share`` of its fair share ``(1 − s)·n``
    (at least one), or ``min_density·n`` when that is more — so no layer is emptied (an emptied attention scorer
    leaves the model blind: it can only learn one caption)."""
    if share <= 0 and min_density <= 0:
        return [0] * len(numels)
    up = lambda x: math.ceil(x - 1e-9)  # noqa: E731 - 0.25·0.01·10000 is 25, not 26
    return [min(n, max(1, up(share * (1.0 - sparsity) * n), up(min_density * n))) for n in numels]


def keep_thresholds(logits: list[Tensor], sparsity: float, floors: list[int] | None = None) -> list[float]:
    """Per-tensor thresholds ``τ_i``: tensor ``i`` keeps its ``floors[i]`` largest logits, and the rest of the
    ``round((1 − sparsity)·N)`` kept logits go to one global threshold over everything else (exactly that many kept,
    ties aside). Without floors every ``τ_i`` is :func:`keep_threshold`'s global one."""
    if not floors or not any(floors):
        tau = keep_threshold(logits, sparsity)
        return [tau] * len(logits)
    flat = [t.detach().reshape(-1).float().cpu() for t in logits]
    n = sum(f.numel() for f in flat)
    keep = int(round((1.0 - sparsity) * n))
    below: list[float] = []  # per tensor: the value just under its floor (s > it keeps exactly the floor)
    rest = []
    for f, k in zip(flat, floors, strict=True):
        k = min(k, f.numel())
        if k <= 0:
            below.append(math.inf)
            rest.append(f)
            continue
        order = f.sort(descending=True).values
        below.append(float(order[k]) if k < f.numel() else -math.inf)
        rest.append(order[k:])
    others = torch.cat(rest)
    budget = keep - sum(min(k, f.numel()) for f, k in zip(flat, floors, strict=True))
    if budget <= 0 or others.numel() == 0:
        tau = math.inf
    elif budget >= others.numel():
        tau = float(others.min()) - 1.0
    else:
        tau = float(torch.kthvalue(others, others.numel() - budget).values)
    return [min(tau, b) for b in below]
