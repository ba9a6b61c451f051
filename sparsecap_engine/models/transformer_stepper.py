"""A Transformer decoding step bound to the model's weights for one decoding pass (eval mode, no autograd).

``Transformer.step`` walks the module tree at every step: ~70 ``nn.Module`` calls, attribute look-ups and a gain
multiplication per layer norm. At batch 1 on a 99 %-sparse model that Python work costs about as much as the sparse
products themselves. During one decoding pass the weights cannot change, so :class:`BoundStep` looks everything up
once — each projection's fastest call (a CSR twin's bound matrix–vector product for one vector, the module otherwise;
``F.linear`` on a dense weight), each layer norm's scaled gain — and runs the same arithmetic as ``step`` on it: the
same log-probs (tested against ``step`` for every sharing option, dense and sparse, batch 1 and beams).

It is built by ``Transformer.stepper()`` at the start of a pass (greedy, sampling, beam search) and dropped at its end;
a model in training mode or with autograd on gets its plain ``step`` instead (SCST differentiates through sampling).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsecap_engine.models.base import Memory, State
from sparsecap_engine.models.transformer import LayerNorm, additive_mask

if TYPE_CHECKING:
    from sparsecap_engine.models.transformer import Transformer

Fn = Callable[[Tensor], Tensor]


def _norm(ln: LayerNorm) -> Fn:
    """The layer norm with its gain scaled once (see ``LayerNorm``): one fused kernel per call."""
    return partial(F.layer_norm, normalized_shape=ln.normalized_shape, weight=(ln.weight * ln.gain).detach(),
                   bias=ln.bias.detach(), eps=ln.fused_eps)


def _linear(module: nn.Module) -> tuple[Fn, Fn]:
    """(for one vector, for rows) — a CSR twin's bound matrix–vector product, ``F.linear`` on a dense weight."""
    if isinstance(module, nn.Linear):
        dense = partial(F.linear, weight=module.weight.detach(),
                        bias=None if module.bias is None else module.bias.detach())
        return dense, dense
    row = module.__dict__.get("row")  # sparse_infer.SparseLinear: ``v ↦ W v + b`` bound to its CSR weight
    return (row if row is not None else module), module


class BoundStep:
    """``Transformer.step`` with every weight looked up once: call as ``step(memory, tokens, state)``."""

    def __init__(self, model: Transformer):
        self.model = model
        self.h, self.d_k, self.kv_shared = model.heads, model.d_k, model.kv_shared
        self.order = model.dec_order
        self.layers = []
        for layer in model.decoder_layers:
            sa, ca = layer.self_attn, layer.cross_attn
            if sa.qkv_proj is not None:
                qkv = [_linear(sa.qkv_proj)]
            else:
                qkv = [_linear(p) for p in sa.stacked_projections()]
            self.layers.append((
                _norm(layer.norm1), qkv, len(sa.stacked_projections()), sa.share, _linear(sa.out_proj),
                _norm(layer.norm2), _linear(ca.qk_proj if ca.share == "qk" else ca.q_proj), _linear(ca.out_proj),
                _norm(layer.norm3), _linear(layer.ffn.w_1), _linear(layer.ffn.w_2),
            ))
        self.final_norm, self.generator = _norm(model.decoder_norm), _linear(model.generator)
        self.embed, self.scale = model.embed, model.embed_scale.detach()

    def __call__(self, memory: Memory, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        m, h, d_k = self.model, self.h, self.d_k
        start = state["k0"].shape[2]
        cross_mask = memory.get("cross_mask")
        e = self.embed(tokens) * self.scale
        x = e + m.pos.table(e.device)[start].to(e.dtype)
        one = x.shape[0] == 1
        pick = 0 if one else 1  # which of each projection's two calls
        if one:
            x = x.view(-1)
        shape = x.shape
        new: State = {}
        for i, u in enumerate(self.order):
            n1, qkv, parts_n, share, so, n2, cq, co, n3, w1, w2 = self.layers[u]
            hx = n1(x)
            if len(qkv) == 1:
                parts = qkv[0][pick](hx).view(-1, parts_n, h, 1, d_k).unbind(1)
            else:
                parts = tuple(p[pick](hx).view(-1, h, 1, d_k) for p in qkv)
            if share == "kv":
                q, k, v = parts[0], parts[1], None
            elif share == "qk":
                q, k, v = parts[0], parts[0], parts[1]
            else:
                q, k, v = parts
            k = torch.cat([state[f"k{i}"], k], dim=2)
            if v is None:
                v = k
            else:
                v = torch.cat([state[f"v{i}"], v], dim=2)
                new[f"v{i}"] = v
            new[f"k{i}"] = k
            x = x + so[pick](F.scaled_dot_product_attention(q, k, v).view(shape))
            q = cq[pick](n2(x)).view(-1, h, 1, d_k)
            ck = memory[f"ck{u}"]
            mask = None if cross_mask is None else additive_mask(q.dtype, cross_mask, None)
            a = F.scaled_dot_product_attention(q, ck, memory.get(f"cv{u}", ck), attn_mask=mask)
            x = x + co[pick](a.view(shape))
            x = x + w2[pick](torch.relu(w1[pick](n3(x))))
        logp = F.log_softmax(self.generator[pick](self.final_norm(x)).float(), dim=-1)
        return (logp.unsqueeze(0) if one else logp), new
