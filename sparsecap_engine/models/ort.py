"""Object Relation Transformer (Herdade et al. 2019; reference §1.4): geometry-aware encoder self-attention.

For regions i, j with relative boxes ``[x1, y1, x2, y2]``: ``cx, cy`` the centres, ``w, h`` the sizes and

    Δx = log(max(|cx_i − cx_j| / w_i, 1e-3))   Δy = log(max(|cy_i − cy_j| / h_i, 1e-3))
    Δw = log(w_i / w_j)                         Δh = log(h_i / h_j)

embedded trigonometrically (``dim_g`` = 64, wave length 1000: ``sin/cos(100·Δ·f_k)``, ``f_k = 1/1000^(k/8)``).
Each encoder layer has ``WG`` = Linear(64 → heads) (one Linear(64→1) per head, stacked) → ReLU → ``w_g``, and its
attention is ``softmax(log(max(w_g, 1e-6)) + QKᵀ/√d_k)`` (padding masked in the dot-product term first).

**The reference's ``+1.0`` on w and h** (a leftover from pixel boxes, §9 item 15) is *not* applied by default
(``box_wh_offset=0.0``): with relative coordinates it puts w, h in [1, 2], which flattens Δw, Δh to
[−0.7, 0.7] and turns Δx, Δy into plain centre distances, losing the scale invariance the formula is for.
Widths and heights are clamped at ``1e-3`` instead (degenerate boxes). ``box_wh_offset=1.0`` reproduces the
reference exactly (e.g. to compare with its checkpoints). The embedding is computed once per image and shared by
all layers (the reference recomputes it per layer; same values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsecap_engine.errors import DataError
from sparsecap_engine.models.transformer import EncoderLayer, MultiHeadAttention, Transformer


def box_deltas(boxes: Tensor, wh_offset: float = 0.0, min_wh: float = 1e-3) -> Tensor:
    """(B, N, 4) relative boxes → (B, N, N, 4) pairwise ``[Δx, Δy, Δw, Δh]`` (i = row, j = column)."""
    x1, y1, x2, y2 = boxes.float().unbind(-1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w = ((x2 - x1) + wh_offset).clamp_min(min_wh)
    h = ((y2 - y1) + wh_offset).clamp_min(min_wh)
    dx = torch.log(((cx[:, :, None] - cx[:, None, :]).abs() / w[:, :, None]).clamp_min(1e-3))
    dy = torch.log(((cy[:, :, None] - cy[:, None, :]).abs() / h[:, :, None]).clamp_min(1e-3))
    dw = torch.log(w[:, :, None] / w[:, None, :])
    dh = torch.log(h[:, :, None] / h[:, None, :])
    return torch.stack([dx, dy, dw, dh], dim=-1)


def box_embedding(deltas: Tensor, dim_g: int = 64, wave_len: float = 1000.0) -> Tensor:
    """Trigonometric embedding of (…, 4) deltas → (…, dim_g): ``concat(sin(100·Δ·f), cos(100·Δ·f))``."""
    n_freq = dim_g // 8
    freqs = 1.0 / (wave_len ** (torch.arange(n_freq, dtype=torch.float32, device=deltas.device) / n_freq))
    args = (100.0 * deltas).unsqueeze(-1) * freqs  # (…, 4, dim_g/8)
    args = args.flatten(-2)  # (…, dim_g/2)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class BoxMultiHeadAttention(MultiHeadAttention):
    """Multi-head attention plus ``WG``: per-head geometry weights added as ``log(max(w_g, 1e-6))``."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.1, share_att: str = "", dim_g: int = 64):
        super().__init__(d_model, num_heads, dropout, share_att)
        self.wg = nn.Linear(dim_g, num_heads)

    def geometry_bias(self, embedding: Tensor) -> Tensor:
        """(B, N, N, dim_g) → (B, heads, N, N) log-geometry term."""
        w_g = F.relu(self.wg(embedding))
        return torch.log(w_g.clamp_min(1e-6)).permute(0, 3, 1, 2)


class BoxEncoderLayer(EncoderLayer):
    self_attn: BoxMultiHeadAttention

    def attention_bias(self, geometry: Tensor | None) -> Tensor | None:
        return None if geometry is None else self.self_attn.geometry_bias(geometry)


class ORT(Transformer):
    """Transformer whose encoder self-attention is :class:`BoxMultiHeadAttention` (needs ``boxes``)."""

    xavier_src_embed = False

    def __init__(
        self,
        vocab_size: int,
        feat_dim: int,
        box_wh_offset: float = 0.0,
        box_dim: int = 64,
        box_wave_len: float = 1000.0,
        **kwargs: object,
    ):
        self.box_wh_offset, self.box_dim, self.box_wave_len = float(box_wh_offset), int(box_dim), float(box_wave_len)
        super().__init__(vocab_size, feat_dim, **kwargs)  # type: ignore[arg-type]

    def make_encoder_layer(
        self, d_model: int, num_heads: int, d_ff: int, dropout: float, share_att: str, **_: object
    ) -> EncoderLayer:
        attn = BoxMultiHeadAttention(d_model, num_heads, dropout, share_att, self.box_dim)
        return BoxEncoderLayer(attn, d_model, d_ff, dropout)

    def geometry(self, visual: dict[str, Tensor]) -> Tensor:
        boxes = visual.get("boxes")
        if boxes is None:
            raise DataError("the ORT model needs region boxes; this input has none (give --boxes or a grid encoder)")
        emb = box_embedding(box_deltas(boxes, self.box_wh_offset), self.box_dim, self.box_wave_len)
        return emb.to(visual["feats"].dtype)
