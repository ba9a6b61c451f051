"""Caption losses: token-averaged cross-entropy with optional label smoothing (reference §3.4)."""

from __future__ import annotations

from torch import Tensor


def caption_xe(logprobs: Tensor, targets: Tensor, pad_id: int, smoothing: float = 0.0,
               count: Tensor | None = None) -> Tensor:
    """−Σ log p(target)·mask / Σ mask; with smoothing ε the target gets 1−ε and the other V−1 classes ε/(V−1).

    ``count`` replaces Σ mask as the normaliser (multi-process runs: the global token count shared out,
    ``training/distributed.py``)."""
    mask = (targets != pad_id).to(logprobs.dtype)
    nll = -logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if smoothing > 0:
        v = logprobs.shape[-1]
        other = -(logprobs.sum(-1) + nll) / (v - 1)  # mean −log p over the non-target classes
        nll = (1 - smoothing) * nll + smoothing * other
    total = mask.sum() if count is None else count.to(logprobs.dtype)
    return (nll * mask).sum() / total.clamp_min(1.0 if count is None else 1e-12)
