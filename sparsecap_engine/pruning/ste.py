"""The straight-through estimators behind supermasks: ``w ⊙ m`` with ``m`` sampled, thresholded or top-k from the
mask logits, and the kept count, each one autograd node per tensor and step."""

from __future__ import annotations

import torch
from torch import Tensor


class _Supermask(torch.autograd.Function):
    """``(w, s) → (w ⊙ m, Σ round(σ(s)))`` with ``m ~ Bernoulli(σ(s))`` (sample) or ``m = round(σ(s)) = [s > 0]``.

    Straight-through estimator for both outputs: ``∂/∂s = σ'(s) ⊙ (g_w ⊙ w + g_kept)`` — one node per tensor and step,
    so the sparsity loss's gradient and the caption loss's gradient share one σ'(s) pass.
    """

    @staticmethod
    def forward(ctx, w: Tensor, logits: Tensor, sample: bool, shift: float = 0.0, scale: float = 1.0,
                ste: bool = False, count: bool = True, buffer: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``count=False``: nobody reads the kept count (the robust recipe), so it is not computed (0 is returned).
        ``buffer``: a tensor shaped and typed like ``w`` (the caller's to ensure) that the top-k mask is written into
        instead of a fresh one (at 53 M logits a fresh mask costs more in page faults than the comparison itself)."""
        ctx.ste = ste
        # counted on the bool comparison: count_nonzero of a float tensor is ~7× slower on CPU
        kept = torch.count_nonzero(logits > shift).to(logits.dtype) if count else logits.new_zeros(())
        if ste:  # deterministic top-k: m = [s > τ], ∂/∂s = g_w ⊙ w (identity straight-through)
            m = (logits > shift).to(w.dtype) if buffer is None else torch.gt(logits, shift, out=buffer)
            ctx.save_for_backward(w, m, m)
            ctx.set_materialize_grads(False)
            return w * m, kept
        p = torch.sigmoid((logits - shift) * scale) if shift or scale != 1.0 else torch.sigmoid(logits)
        # a float mask: w * m and g * m are cheaper than torch.where on CPU, worth the extra saved bytes
        m = torch.bernoulli(p) if sample else (logits > shift).to(p.dtype)
        ctx.save_for_backward(w, p, m)
        ctx.set_materialize_grads(False)
        return w * m.to(w.dtype), kept

    @staticmethod
    def backward(ctx, g_w: Tensor | None, g_kept: Tensor | None):
        w, p, m = ctx.saved_tensors
        gw = g_w * m if g_w is not None and ctx.needs_input_grad[0] else None
        gs = None
        if ctx.needs_input_grad[1] and (g_w is not None or g_kept is not None):
            if g_w is None:
                gs = torch.zeros_like(p).add_(g_kept)
            elif g_kept is None:
                gs = g_w * w
            else:
                gs = torch.addcmul(g_kept.to(w.dtype), g_w, w)
            if not ctx.ste:
                gs.mul_(torch.addcmul(p, p, p, value=-1.0))  # σ'(s) = p − p² in one pass
        return gw, gs, None, None, None, None, None, None


class _KeptCount(torch.autograd.Function):
    """``Σ round(σ(s))`` = number of logits > 0, with the straight-through gradient σ'(s)."""

    @staticmethod
    def forward(ctx, logits: Tensor) -> Tensor:
        ctx.save_for_backward(logits)
        return (logits > 0).sum().to(logits.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        (logits,) = ctx.saved_tensors
        p = torch.sigmoid(logits)
        return g * p * (1 - p)


def kept_count(logits: Tensor) -> Tensor:
    return _KeptCount.apply(logits)
