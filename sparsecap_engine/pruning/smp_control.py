"""The robust supermask recipe's control: a target-sparsity schedule and a multiplier ``λ_t`` that tracks it.

The reference SMP adds ``λ·(1 − a_t)·|s_target − S|`` with a fixed ``λ``. Its gradient per mask logit is
``λ·σ'(s)/N``: with ``N`` masked weights it crawls on a 2 M-weight model (Adam with eps 1e-2 turns it into an update
of ``lr·g/eps ≈ 1e-3``) and stampedes on a 172-weight toy (every logit crosses zero on the same step). Here the
sparsity term is a density penalty ``λ_t·D(s)``, ``D = Σ round(σ(s))/N`` (straight-through, so ∂D/∂s = σ'(s)/N), and
``λ_t`` is a Lagrange multiplier updated in log space after every step so that the hard density ``D_t`` follows a
cubic schedule (Zhu & Gupta's shape) down to ``1 − s_target`` at ``ramp_end · T``:

    s*(t) = s_f · (1 − (1 − min(1, t / (ramp_end·T)))³),      log λ_{t+1} = log λ_t + k · clip((D_t − D*_t)/D*_t, ±1)

The mask logits use Adam with a tiny eps (scale-free: a logit moves at most ≈ lr per step whatever ``N`` and the
gradient scale), and ``lr`` follows the run length (``init / (cross · T)``: a consistently pushed logit reaches zero
after ``cross · T`` steps), so the same recipe works from 200 to 100 k steps. ``λ_0`` comes from the first step's
caption-loss gradients (the median ``|∂L/∂s|``), so the push starts on the scale of the task's own signal.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def cubic_target(step: int, total_steps: int, target: float, ramp_end: float) -> float:
    """``s*(t)``: 0 at step 0, ``target`` from ``ramp_end · T`` on, cubic in between."""
    end = max(1.0, ramp_end * total_steps)
    x = min(1.0, step / end)
    return target * (1.0 - (1.0 - x) ** 3)


class DensityController:
    """``λ_t`` for the penalty ``λ_t · D(s)``: grows while the masks are denser than the schedule, shrinks otherwise."""

    def __init__(self, target: float, total_steps: int, ramp_end: float = 0.5, gain: float = 0.2):
        self.target = float(target)
        self.total_steps = max(1, int(total_steps))
        self.ramp_end = float(ramp_end)
        self.gain = float(gain)
        self.log_lam: float | None = None  # set from the first step's gradients

    @property
    def lam(self) -> float:
        return 0.0 if self.log_lam is None else math.exp(self.log_lam)

    def target_at(self, step: int) -> float:
        return cubic_target(step, self.total_steps, self.target, self.ramp_end)

    def seed(self, grads: list[Tensor], numel: int, init: float) -> None:
        """``λ_0 = N · median|g| / σ'(init)``: the penalty's push equals the median caption-loss push per logit."""
        flat = torch.cat([g.detach().reshape(-1).abs().float() for g in grads])
        nonzero = flat[flat > 0]
        if nonzero.numel() > 1_000_000:  # the median of a sample is as good and much cheaper
            idx = torch.randint(0, nonzero.numel(), (1_000_000,), generator=torch.Generator().manual_seed(0))
            nonzero = nonzero[idx.to(nonzero.device)]
        med = float(nonzero.median()) if nonzero.numel() else 1e-8
        p = 1.0 / (1.0 + math.exp(-init))
        self.log_lam = math.log(max(1e-30, numel * med / max(1e-12, p * (1.0 - p))))

    def update(self, step: int, density: float) -> None:
        """After step ``step`` (0-based): compare the hard density with the schedule's at ``step + 1``."""
        if self.log_lam is None:
            return
        want = max(1e-6, 1.0 - self.target_at(step + 1))
        err = max(-1.0, min(1.0, (density - want) / want))
        self.log_lam += self.gain * err

    def state(self) -> dict[str, float | None]:
        return {"log_lam": self.log_lam}

    def load(self, state: dict[str, float | None]) -> None:
        self.log_lam = state.get("log_lam")
