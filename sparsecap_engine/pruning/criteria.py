"""Which weights to keep: magnitude criteria (class-blind, class-uniform, class-distribution), SNIP saliency,
selection of exactly the top-k scores (global or per layer) with a minimum-density guard, and the Zhu & Gupta cubic
sparsity schedule.

Scores of already-pruned weights are set to −1 (every criterion is ≥ 0), so re-masking never regrows a weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from sparsecap_engine.errors import UsageError

CRITERIA = ("blind", "uniform", "dist")


def magnitude_scores(weights: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """``|w|`` per tensor (−1 where already pruned)."""
    out = {}
    for name, w in weights.items():
        s = w.detach().abs().float()
        if masks is not None and name in masks:
            s = s.masked_fill(~masks[name].to(s.device, torch.bool), -1.0)
        out[name] = s
    return out


def dist_scores(weights: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Class-distribution: ``|(w − μ)/σ|`` with μ, σ (population) of the layer's surviving weights (−1 if pruned)."""
    out = {}
    for name, w in weights.items():
        w = w.detach().float()
        keep = masks[name].to(w.device, torch.bool) if masks is not None and name in masks else None
        alive = w[keep] if keep is not None else w.flatten()
        if alive.numel() == 0:
            out[name] = torch.full_like(w, -1.0)
            continue
        mu = alive.mean()
        sd = alive.std(unbiased=False) if alive.numel() > 1 else alive.new_tensor(0.0)
        s = ((w - mu) / (sd if sd > 0 else 1.0)).abs()
        out[name] = s.masked_fill(~keep, -1.0) if keep is not None else s
    return out


#: how SNIP ranks connections: ``abs`` = ``|g ⊙ w|`` (Lee et al. 2019); ``signed`` = the reference's ``g⊙w / Σ g⊙w``
SNIP_SALIENCY = ("abs", "signed")


def snip_scores(weights: dict[str, Tensor], grads: dict[str, Tensor], masks=None,
                saliency: str = "abs") -> dict[str, Tensor]:
    """SNIP connection saliency ``|g ⊙ w|`` (Lee et al. 2019).

    ``saliency="signed"`` reproduces the reference: the signed ``g ⊙ w`` (= ∂L/∂m at m = 1) divided by its global sum.
    With a positive sum the most negative ``g ⊙ w`` ranks lowest and goes first: the weight whose removal would
    *raise* the loss most, to first order; a negative sum inverts the whole ranking (its defect, kept for
    reproduction). Already-pruned weights score below every live one."""
    if saliency not in SNIP_SALIENCY:
        raise UsageError(f"unknown SNIP saliency {saliency!r}; choose from {', '.join(SNIP_SALIENCY)}")
    raw = {name: grads[name].float() * w.detach().float() for name, w in weights.items()}
    if saliency == "signed":
        total = sum(float(r.sum()) for r in raw.values())
        raw = {name: r / (total if total != 0.0 else 1.0) for name, r in raw.items()}
        floor = min((float(r.min()) for r in raw.values()), default=0.0) - 1.0
    else:
        raw = {name: r.abs() for name, r in raw.items()}
        floor = -1.0
    out = {}
    for name, s in raw.items():
        if masks is not None and name in masks:
            s = s.masked_fill(~masks[name].to(s.device, torch.bool), floor)
        out[name] = s
    return out


def n_keep(numel: int, sparsity: float) -> int:
    """Weights kept when pruning ``numel`` to ``sparsity``: ``numel − round(s·numel)``."""
    return numel - int(round(sparsity * numel))


def _top_k_flat(flat: Tensor, k: int) -> Tensor:
    """Bool mask of exactly ``k`` largest entries of a 1-D tensor (ties broken by position)."""
    n = flat.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=flat.device)
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=flat.device)
    if k <= n // 8:  # few kept: a partial sort of k is cheapest
        keep = torch.zeros(n, dtype=torch.bool, device=flat.device)
        keep[torch.topk(flat, k, sorted=False).indices] = True
        return keep
    thr = torch.kthvalue(flat, n - k).values
    keep = flat > thr
    short = k - int(keep.sum())
    if short > 0:  # weights tied with the threshold: keep the first ones
        ties = torch.nonzero(flat == thr).flatten()[:short]
        keep[ties] = True
    return keep


@dataclass
class Selection:
    """Masks plus notes: layers the guard kept alive and layers left empty."""

    masks: dict[str, Tensor]
    guarded: dict[str, int] = field(default_factory=dict)
    emptied: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        out = [f"{name}: pruned to 0 weights (the whole layer is gone; --min-density keeps some)"
               for name in self.emptied]
        out += [f"{name}: global threshold would keep {n}; the --min-density guard kept more"
                for name, n in self.guarded.items()]
        return out


def _split(flat_mask: Tensor, scores: dict[str, Tensor]) -> dict[str, Tensor]:
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = flat_mask[start : start + s.numel()].view(s.shape)
        start += s.numel()
    return out


def select_global(scores: dict[str, Tensor], sparsity: float, min_density: float = 0.0) -> Selection:
    """Keep the ``N − round(s·N)`` largest scores over all tensors; each layer keeps ≥ ``ceil(min_density·n)``."""
    total = sum(s.numel() for s in scores.values())
    budget = n_keep(total, sparsity)
    floors = {n: min(s.numel(), math.ceil(min_density * s.numel())) for n, s in scores.items()} if min_density else {}
    if sum(floors.values()) > budget:
        raise UsageError(f"--min-density {min_density} keeps more weights than sparsity {sparsity} allows")
    forced: dict[str, int] = {}
    guarded: dict[str, int] = {}
    while True:
        free = {n: s for n, s in scores.items() if n not in forced}
        k = budget - sum(floors[n] for n in forced)
        flat = torch.cat([s.flatten() for s in free.values()]) if free else torch.zeros(0)
        masks = _split(_top_k_flat(flat, k), free) if free else {}
        new = {n: int(m.sum()) for n, m in masks.items() if floors.get(n, 0) and int(m.sum()) < floors[n]}
        if not new:
            break
        for n, kept in new.items():
            forced[n] = floors[n]
            guarded.setdefault(n, kept)
    for n in forced:
        masks[n] = _top_k_flat(scores[n].flatten(), floors[n]).view(scores[n].shape)
    masks = {n: masks[n] for n in scores}
    emptied = [n for n, m in masks.items() if not bool(m.any())]
    return Selection(masks, guarded, emptied)


def select_uniform(scores: dict[str, Tensor], sparsity: float, min_density: float = 0.0) -> Selection:
    """Keep ``n − round(s·n)`` largest scores in every tensor (class-uniform)."""
    masks = {}
    for name, s in scores.items():
        k = max(n_keep(s.numel(), sparsity), math.ceil(min_density * s.numel()))
        masks[name] = _top_k_flat(s.flatten(), k).view(s.shape)
    return Selection(masks, emptied=[n for n, m in masks.items() if not bool(m.any())])


def select(
    criterion: str,
    weights: dict[str, Tensor],
    sparsity: float,
    masks: dict[str, Tensor] | None = None,
    min_density: float = 0.0,
) -> Selection:
    """Masks at ``sparsity`` by magnitude: ``blind`` (global |w|), ``uniform`` (per layer), ``dist`` (global z)."""
    if criterion == "blind":
        return select_global(magnitude_scores(weights, masks), sparsity, min_density)
    if criterion == "uniform":
        return select_uniform(magnitude_scores(weights, masks), sparsity, min_density)
    if criterion == "dist":
        return select_global(dist_scores(weights, masks), sparsity, min_density)
    raise UsageError(f"unknown criterion {criterion!r}; choose from {', '.join(CRITERIA)}")


def cubic_sparsity(t: int, s_i: float, s_f: float, start: int, end: int) -> float:
    """Zhu & Gupta (2017): ``s_t = s_f + (s_i − s_f)(1 − (t − t0)/(n·Δt))³``, clamped to [t0, t0 + nΔt]."""
    if end <= start:
        return s_f if t >= start else s_i
    p = min(1.0, max(0.0, (t - start) / (end - start)))
    return s_f + (s_i - s_f) * (1.0 - p) ** 3


@dataclass
class GradualSchedule:
    """Prune at ``t = start + k·every`` (k = 0..n), ``end = start + n·every`` — the reference's grid."""

    start: int
    end: int
    every: int
    initial: float
    final: float

    @classmethod
    def scaled(
        cls,
        total_steps: int,
        final: float,
        start: int | None = None,
        end: int | None = None,
        every: int | None = None,
        initial: float = 0.0,
    ) -> GradualSchedule:
        """Paper-like defaults scaled to the run: start after 1/15 of training (epoch 2 of 15), end at 1/2,
        one update per 1000 of the reference's 113,280 steps (at least 1)."""
        start = round(total_steps / 15) if start is None else start
        every = max(1, round(total_steps * 1000 / 113280)) if every is None else every
        end = total_steps // 2 if end is None else end
        if every <= 0 or start < 0 or end < start:
            raise UsageError(f"bad gradual schedule: start {start}, end {end}, every {every}")
        if not 0.0 <= initial <= final:  # NaN fails too
            raise UsageError(f"gradual --initial-sparsity must be in [0, --sparsity {final}], got {initial}")
        n = (end - start) // every
        return cls(start, start + n * every, every, initial, final)

    def at(self, t: int) -> float | None:
        """The sparsity to prune to after step ``t`` (steps done), or None when ``t`` is not an update step."""
        if t < self.start or t > self.end or (t - self.start) % self.every:
            return None
        return cubic_sparsity(t, self.initial, self.final, self.start, self.end)
