"""Learning-rate schedules as plain functions of the step (reference §3.3), applied to every non-mask group."""

from __future__ import annotations

import math
from collections.abc import Callable

from sparsecap_engine.config import OptimConfig
from sparsecap_engine.errors import UsageError


def cosine(lr0: float, lr_min: float, total: int, warmup: int = 0) -> Callable[[int], float]:
    """``lr = (lr0 − lr_min)·(1 + cos(π·min(1, t/T)))/2 + lr_min``, with an optional linear warm-up."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return lr0 * (step + 1) / warmup
        p = min(1.0, step / max(1, total))
        return (lr0 - lr_min) * (1 + math.cos(math.pi * p)) / 2 + lr_min

    return f


def noam(d_model: int, warmup: int, factor: float = 1.0) -> Callable[[int], float]:
    """``lr = factor · d^−0.5 · min(t^−0.5, t·warmup^−1.5)`` (t counted from 1)."""

    def f(step: int) -> float:
        t = step + 1
        return factor * d_model**-0.5 * min(t**-0.5, t * warmup**-1.5)

    return f


def step_decay(lr0: float, every: int, rate: float) -> Callable[[int], float]:
    """``lr = lr0 · rate^floor(t / every)``; ``every <= 0`` → constant."""
    return lambda step: lr0 * (rate ** (step // every) if every > 0 else 1.0)


def constant(lr0: float) -> Callable[[int], float]:
    return lambda step: lr0


SCHEDULES = ("cosine", "noam", "step", "constant")


def make_schedule(cfg: OptimConfig, total_steps: int, d_model: int) -> Callable[[int], float]:
    if cfg.schedule == "cosine":
        return cosine(cfg.lr, cfg.lr_min, total_steps, cfg.warmup)
    if cfg.schedule == "noam":
        return noam(d_model, max(1, cfg.warmup), cfg.noam_factor)
    if cfg.schedule == "step":
        return step_decay(cfg.lr, cfg.step_every, cfg.step_rate)
    if cfg.schedule == "constant":
        return constant(cfg.lr)
    raise UsageError(f"unknown schedule {cfg.schedule!r}; choose from {', '.join(SCHEDULES)}")
