"""The Transformer's incremental decoding step, bound to the model's weights (``Transformer.step`` / ``stepper``).

Walking the module tree at every step costs ~70 ``nn.Module`` calls, attribute look-ups and a gain multiplication per
layer norm (``LayerNorm.bound`` does it once): at batch 1 on a 99 %-sparse model, that Python work costs about as
much as the sparse products. A :class:`BoundStep` looks everything up once — each projection's fastest call (a CSR
twin's bound matrix–vector product for one vector, the module otherwise; ``F.linear`` on a dense weight), each layer
norm's scaled gain — and then runs a step on rows: one vector (d,) at batch 1, (B, d) otherwise, instead of (B, 1, d)
sequences, so the (B, h, 1, d_k) attention heads are plain views of the projections (no transposes, no copies).

``Transformer.step`` binds one for that single step (weights read at every step, as a training-mode supermask
resamples them); ``Transformer.stepper()`` binds one for a whole decoding pass (greedy, sampling, beam search) in
eval mode without autograd, when the weights cannot change until the pass ends. Dropout (training mode) and
autograd work as in ``forward``: the step equals teacher forcing position by position, dropout draws included
(tested).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsecap_engine.models.base import Memory, State
from sparsecap_engine.models.transformer import additive_mask, attention

if TYPE_CHECKING:
    from sparsecap_engine.models.transformer import Transformer

Fn = Callable[[Tensor], Tensor]


def _linear(module: nn.Module) -> tuple[Fn, Fn]:
    """(for one vector, for rows): ``F.linear`` on a dense weight; a CSR twin's bound matrix–vector product and
    the module itself (``sparse_infer.SparseLinear``)."""
    if isinstance(module, nn.Linear):  # (a parametrised one, e.g. masked, computes its weight here, once)
        dense = partial(F.linear, weight=module.weight, bias=module.bias)
        return dense, dense
    row = module.__dict__.get("row")
    return (row if row is not None else module), module


def _keep(dropout: nn.Module) -> Fn | None:
    """The dropout to apply in training mode; None (nothing to call) in eval."""
    return dropout if dropout.training and dropout.p > 0 else None


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: Fn | None) -> Tensor:
    """One query per row: the fused kernel, or (dropout on the attention weights) the reference formula."""
    if dropout is not None:
        return attention(q, k, v, mask, None, dropout)  # type: ignore[arg-type]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask(q.dtype, mask, None))


class BoundStep:
    """``step(memory, tokens, state) -> (log-probs (B, V), new state)`` with every weight looked up once."""

    def __init__(self, model: Transformer):
        self.model = model
        self.h, self.d_k, self.order = model.heads, model.d_k, model.dec_order
        self.layers = []
        for layer in model.decoder_layers:
            sa, ca = layer.self_attn, layer.cross_attn
            qkv = [_linear(sa.qkv_proj)] if sa.qkv_proj is not None else [_linear(p) for p in sa.stacked_projections()]
            self.layers.append((
                layer.norm1.bound(), qkv, len(sa.stacked_projections()), sa.assign, _linear(sa.out_proj),
                layer.norm2.bound(), _linear(ca.qk_proj if ca.share == "qk" else ca.q_proj), _linear(ca.out_proj),
                layer.norm3.bound(), _linear(layer.ffn.w_1), _linear(layer.ffn.w_2),
                _keep(sa.dropout), _keep(ca.dropout), _keep(layer.dropout), _keep(layer.ffn.dropout),
            ))
        self.final_norm, self.generator = model.decoder_norm.bound(), _linear(model.generator)
        self.embed, self.scale, self.embed_drop = model.embed, model.embed_scale, _keep(model.embed_dropout)

    def _qkv(self, layer: tuple, x: Tensor, pick: int) -> tuple[Tensor, Tensor, Tensor]:
        """(Q, K, V) heads (B, h, 1, d_k) of rows x (``MultiHeadAttention.assign``: V *is* K with shared K/V)."""
        _, qkv, n, assign = layer[:4]
        h, d_k = self.h, self.d_k
        if len(qkv) == 1:  # the stacked projection (``MultiHeadAttention.qkv_proj``)
            return assign(*qkv[0][pick](x).view(-1, n, h, 1, d_k).unbind(1))
        return assign(*(p[pick](x).view(-1, h, 1, d_k) for p in qkv))

    def __call__(self, memory: Memory, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        h, d_k = self.h, self.d_k
        start = state["k0"].shape[2]
        model = self.model
        cross_mask = model.cross_mask(memory)
        e = self.embed(tokens) * self.scale
        x = e + model.pos.table(e.device)[start].to(e.dtype)
        if self.embed_drop is not None:
            x = self.embed_drop(x)
        one = x.shape[0] == 1
        pick = 0 if one else 1  # each projection's call for one vector, or for rows
        if one:
            x = x.view(-1)
        shape = x.shape
        new: State = {}
        for i, u in enumerate(self.order):
            layer = self.layers[u]
            n1, so, n2, cq, co, n3, w1, w2, sa_drop, ca_drop, res_drop, ffn_drop = layer[:1] + layer[4:]
            q, k, v = self._qkv(layer, n1(x), pick)
            shared = v is k
            k = new[f"k{i}"] = torch.cat([state[f"k{i}"], k], dim=2)
            if shared:
                v = k
            else:
                v = new[f"v{i}"] = torch.cat([state[f"v{i}"], v], dim=2)
            a = so[pick](_attend(q, k, v, None, sa_drop).view(shape))
            x = x + (a if res_drop is None else res_drop(a))
            q = cq[pick](n2(x)).view(-1, h, 1, d_k)
            a = co[pick](_attend(q, *model.cross_kv(memory, u), cross_mask, ca_drop).view(shape))
            x = x + (a if res_drop is None else res_drop(a))
            f = torch.relu(w1[pick](n3(x)))
            f = w2[pick](f if ffn_drop is None else ffn_drop(f))
            x = x + (f if res_drop is None else res_drop(f))
        logp = F.log_softmax(self.generator[pick](self.final_norm(x)).float(), dim=-1)
        return (logp.unsqueeze(0) if one else logp), new
