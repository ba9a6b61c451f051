"""Gradient clipping of the weights' groups (reference §3.3): by global norm or by value; mask logits never."""

from __future__ import annotations

import math

import torch


def clip_gradients(optimizer: torch.optim.Optimizer, clip: float, mode: str) -> torch.Tensor:
    """Clip the gradients of the scheduled groups (the model's weights; never a pruning method's mask logits) by
    global norm or by value (``clip`` 0 = off); returns their global norm before clipping (after, for ``value``)."""
    params = [p for g in optimizer.param_groups if g.get("scheduled", True) for p in g["params"]]
    if clip > 0 and mode == "value":
        torch.nn.utils.clip_grad_value_(params, clip)
    return torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 and mode == "norm" else math.inf)
