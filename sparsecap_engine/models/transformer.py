"""Pre-LN encoder–decoder Transformer over regions (Vaswani et al. 2017, Annotated-Transformer form; reference §1.3).

With the ACORT options (Tan et al. 2022, reference §1.5):

- ``share_att="kv"``: K and V use one projection and ``value = key`` (3 Linear layers per attention instead of 4);
  ``share_att="qk"``: Q and K share one projection, V has its own;
- ``share_layers=(0, 0, 0, 1, 1, 1)``: which unique layer object sits at each depth (depth = len of the tuple).

Incremental decoding keeps one self-attention cache **per depth** (``state["k{depth}"]``, batch first), not per
layer object, so a layer shared by several depths stays correct (the reference's cache is per module, §1.6).
Cross-attention K/V depend only on the image and the layer's weights: ``prepare`` computes them once per image and
per *unique* layer and keeps them in ``memory`` (repeated per caption or beam like any memory tensor). The step
itself, on rows rather than (B, 1, d) sequences, is :mod:`~sparsecap_engine.models.transformer_stepper`.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsecap_engine.errors import UsageError
from sparsecap_engine.models.base import Memory, State

SHARE_ATT = ("", "kv", "qk")


class LayerNorm(nn.Module):
    """The reference's LayerNorm, ``a·(x − mean)/(σ + ε) + b`` with the unbiased σ, computed by PyTorch's fused
    kernel as ``a·(x − mean)/√(σ² + ε²) + b``: the same to ~ε/σ relative (1e-6 for σ ~ 1; a constant row still gives
    ``b``). ``torch.std_mean`` is a scalar loop on the CPU, 10–30× slower than ``F.layer_norm`` (122 µs vs 8 µs for
    36 × 512 values), and its autograd is unfused: at batch 1 the reference formula's five ops cost more than the
    sparse products they sit between."""

    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__()
        if features < 2:
            raise UsageError("LayerNorm needs at least 2 features (the unbiased std of one value is undefined)")
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.eps = eps
        # layer_norm divides by the biased √(var_b + ε'): with var_b = var·(n−1)/n, ε' = ε²·(n−1)/n and the gain
        # scaled by √((n−1)/n), that is a/√(var + ε²)
        # (a 0-dim tensor, not a float: multiplying by a Python float converts it to a tensor at every call)
        self.normalized_shape, self.fused_eps = (features,), eps * eps * (features - 1) / features
        self.register_buffer("gain", torch.tensor(math.sqrt((features - 1) / features)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight * self.gain, self.bias, self.fused_eps)

    def bound(self) -> Callable[[Tensor], Tensor]:
        """``forward`` with the scaled gain computed once, for as long as the weights do not change."""
        return partial(F.layer_norm, normalized_shape=self.normalized_shape, weight=self.weight * self.gain,
                       bias=self.bias, eps=self.fused_eps)


class PositionalEncoding(nn.Module):
    """Sinusoidal table PE(t, 2i) = sin(t / 10000^(2i/d)), PE(t, 2i+1) = cos(...); recomputed, never saved: made on the
    first forward pass, on the input's device (building a model, even on the meta device, computes nothing)."""

    def __init__(self, d_model: int, max_len: int = 5000):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", torch.empty(0, d_model), persistent=False)

    def table(self, device: torch.device) -> Tensor:
        if self.pe.shape[0] != self.max_len or self.pe.device != device:
            position = torch.arange(self.max_len, dtype=torch.float32, device=device).unsqueeze(1)
            div = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32, device=device)
                            * (-math.log(10000.0) / self.d_model))
            pe = torch.zeros(self.max_len, self.d_model, device=device)
            pe[:, 0::2] = torch.sin(position * div)
            pe[:, 1::2] = torch.cos(position * div[: self.d_model // 2])
            self.pe = pe
        return self.pe

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """Add rows ``start .. start+T`` to ``x`` (B, T, d)."""
        return x + self.table(x.device)[start : start + x.shape[1]].to(x.dtype)


def drop(dropout: nn.Module, x: Tensor) -> Tensor:
    """``dropout(x)`` in training, ``x`` itself in eval (no module call: at batch 1 every call's fixed cost counts)."""
    return dropout(x) if dropout.training else x


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, dropout: nn.Module) -> Tensor:
    """``softmax(QKᵀ/√d_k [masked] + bias)·V`` with q (B, h, Tq, d_k), k/v (B, h, Tk, d_k), mask broadcastable bool."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    return dropout(F.softmax(scores, dim=-1)) @ v


def additive_mask(dtype: torch.dtype, mask: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """``attention``'s mask and bias as one additive mask: masked scores get the dtype's minimum, then the bias is
    added, so a row with every key masked stays uniform (a boolean mask would make it NaN)."""
    low = torch.finfo(dtype).min
    if bias is not None:
        bias = bias.to(dtype)
        return bias if mask is None else bias.masked_fill(~mask, low)
    return None if mask is None else torch.where(mask, 0.0, low).to(dtype)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with optional projection sharing (``share_att``: "" | "kv" | "qk")."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.1, share_att: str = ""):
        super().__init__()
        if d_model % num_heads:
            raise UsageError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        if share_att not in SHARE_ATT:
            raise UsageError(f"share_att must be one of '', kv, qk (got {share_att!r})")
        self.h, self.d_k, self.share = num_heads, d_model // num_heads, share_att
        if share_att == "kv":
            self.q_proj, self.kv_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        elif share_att == "qk":
            self.qk_proj, self.v_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        else:
            self.q_proj = nn.Linear(d_model, d_model)
            self.k_proj, self.v_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        #: optional one product for Q, K and V of self-attention (the projections' weights stacked), e.g. the CSR
        #: twin ``sparse_infer`` puts here for a pruned model: one sparse product per step instead of two or three
        self.register_module("qkv_proj", None)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.d_k).transpose(1, 2)

    def query(self, x: Tensor) -> Tensor:
        """Q heads (B, h, T, d_k)."""
        return self._heads(self.qk_proj(x) if self.share == "qk" else self.q_proj(x))

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(K, V) heads; with ``share_att="kv"`` V *is* K (the same tensor)."""
        if self.share == "kv":
            k = self._heads(self.kv_proj(x))
            return k, k
        k = self._heads(self.qk_proj(x) if self.share == "qk" else self.k_proj(x))
        return k, self._heads(self.v_proj(x))

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(Q, K, V) heads of self-attention over ``x``: the projections one by one, or ``qkv_proj`` when set."""
        if self.qkv_proj is None:
            return (self.query(x), *self.keys_values(x))
        return self.assign(*(self._heads(p) for p in self.qkv_proj(x).split(self.h * self.d_k, dim=-1)))

    def assign(self, *parts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(Q, K, V) from the outputs of ``stacked_projections`` in order: V *is* K with ``share_att="kv"``, K *is* Q
        with ``"qk"``."""
        if self.share == "kv":
            return parts[0], parts[1], parts[1]
        if self.share == "qk":
            return parts[0], parts[0], parts[1]
        return parts[0], parts[1], parts[2]

    def stacked_projections(self) -> list[nn.Module]:
        """The projections ``qkv_proj`` stacks, in its output order (Q, K, V; Q, KV; QK, V)."""
        names = {"": ("q_proj", "k_proj", "v_proj"), "kv": ("q_proj", "kv_proj"), "qk": ("qk_proj", "v_proj")}
        return [getattr(self, n) for n in names[self.share]]

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        if self.training and self.dropout.p > 0:
            out = attention(q, k, v, mask, bias, self.dropout)
        else:  # no dropout on the weights: one fused kernel (about half the cost at batch 1), the same values
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask(q.dtype, mask, bias))
        b, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, self.h * self.d_k))

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        if context is x:
            return self.attend(*self.qkv(x), mask, bias)
        return self.attend(self.query(x), *self.keys_values(context), mask, bias)


class FeedForward(nn.Module):
    """Linear(d, d_ff) → ReLU → Dropout → Linear(d_ff, d)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(drop(self.dropout, F.relu(self.w_1(x))))


class EncoderLayer(nn.Module):
    """Pre-LN: ``x + Drop(SelfAttn(LN(x)))`` then ``x + Drop(FFN(LN(x)))``; ``bias`` is added to the scores (ORT)."""

    def __init__(self, self_attn: MultiHeadAttention, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.self_attn = self_attn
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = LayerNorm(d_model), LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def attention_bias(self, geometry: Tensor | None) -> Tensor | None:
        return None

    def forward(self, x: Tensor, mask: Tensor, geometry: Tensor | None = None) -> Tensor:
        h = self.norm1(x)
        x = x + drop(self.dropout, self.self_attn(h, h, mask, self.attention_bias(geometry)))
        return x + drop(self.dropout, self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    """Pre-LN: masked self-attention (cached), cross-attention over the regions, FFN."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float, share_att: str):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout, share_att)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout, share_att)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = LayerNorm(d_model), LayerNorm(d_model), LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, self_mask: Tensor | None, cross_kv: tuple[Tensor, Tensor], cross_mask: Tensor | None
    ) -> Tensor:
        """Teacher forcing over (B, T, d); incremental decoding has its own step (``transformer_stepper``)."""
        h = self.norm1(x)
        x = x + drop(self.dropout, self.self_attn.attend(*self.self_attn.qkv(h), self_mask))
        q = self.cross_attn.query(self.norm2(x))
        x = x + drop(self.dropout, self.cross_attn.attend(q, cross_kv[0], cross_kv[1], cross_mask))
        return x + drop(self.dropout, self.ffn(self.norm3(x)))


def layer_order(share: object, num_layers: int, where: str) -> tuple[int, ...]:
    """Depth → unique layer index. ``share`` empty → ``num_layers`` distinct layers; else a tuple such as (0,0,1,1)."""
    if share in (None, "", (), []):
        if num_layers < 1:
            raise UsageError(f"{where} num_layers must be at least 1")
        return tuple(range(num_layers))
    if isinstance(share, str):
        try:
            share = ast.literal_eval(share)
        except (ValueError, SyntaxError):
            raise UsageError(f"{where} share_layers must be a tuple of layer indices, got {share!r}") from None
    try:
        order = tuple(int(i) for i in share)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise UsageError(f"{where} share_layers must be a tuple of layer indices, got {share!r}") from None
    if not order or set(order) != set(range(max(order) + 1)):
        raise UsageError(f"{where} share_layers must use every index 0..k-1 at least once, got {order}")
    return order


class Transformer(nn.Module):
    """Caption decoder: region embedding + Transformer encoder + Transformer decoder + generator.

    ``src_embed`` Linear(D, d)→ReLU→Dropout(drop_prob_src); N encoder layers + LN; N decoder layers + LN;
    ``embed`` Embedding(V, d)·√d + sinusoidal PE + Dropout; ``generator`` Linear(d, V) → log_softmax.
    Xavier-uniform init on every matrix (ORT keeps ``src_embed`` at PyTorch's default, as the reference).
    """

    pad_id = 0
    xavier_src_embed = True

    def __init__(
        self,
        vocab_size: int,
        feat_dim: int,
        d_model: int = 512,
        dim_feedforward: int = 2048,
        num_layers: int = 6,
        num_heads: int = 8,
        dropout: float = 0.1,
        drop_prob_src: float = 0.5,
        share_att: str = "",
        share_att_encoder: str | None = None,
        share_att_decoder: str | None = None,
        share_layers: object = (),
        share_layers_encoder: object = None,
        share_layers_decoder: object = None,
        **options: object,
    ):
        super().__init__()
        self.vocab_size, self.d_model = vocab_size, d_model
        att_enc = share_att if share_att_encoder is None else share_att_encoder
        att_dec = share_att if share_att_decoder is None else share_att_decoder
        enc_order = layer_order(share_layers if share_layers_encoder is None else share_layers_encoder,
                                num_layers, "encoder")
        dec_order = layer_order(share_layers if share_layers_decoder is None else share_layers_decoder,
                                num_layers, "decoder")
        self.src_embed = nn.Sequential(nn.Linear(feat_dim, d_model), nn.ReLU(), nn.Dropout(drop_prob_src))
        self.encoder_layers = nn.ModuleList(
            self.make_encoder_layer(d_model, num_heads, dim_feedforward, dropout, att_enc, **options)
            for _ in range(max(enc_order) + 1)
        )
        self.encoder_norm = LayerNorm(d_model)
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, dim_feedforward, dropout, att_dec) for _ in range(max(dec_order) + 1)
        )
        self.decoder_norm = LayerNorm(d_model)
        self.enc_order, self.dec_order = enc_order, dec_order
        self.kv_shared = att_dec == "kv"
        self.heads, self.d_k = num_heads, d_model // num_heads
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model)
        self.embed_dropout = nn.Dropout(dropout)
        self.register_buffer("embed_scale", torch.tensor(math.sqrt(d_model)), persistent=False)  # √d, as a tensor
        self.generator = nn.Linear(d_model, vocab_size)
        for name, p in self.named_parameters():
            if p.dim() > 1 and (self.xavier_src_embed or not name.startswith("src_embed.")):
                nn.init.xavier_uniform_(p)

    def make_encoder_layer(
        self, d_model: int, num_heads: int, d_ff: int, dropout: float, share_att: str, **_: object
    ) -> EncoderLayer:
        return EncoderLayer(MultiHeadAttention(d_model, num_heads, dropout, share_att), d_model, d_ff, dropout)

    # -------------------------------------------------------------------------------------------------- encoder
    def geometry(self, visual: dict[str, Tensor]) -> Tensor | None:
        """Pairwise box features for the encoder (ORT); the plain Transformer uses none."""
        return None

    def prepare(self, visual: dict[str, Tensor]) -> Memory:
        """Encode the regions once per image; precompute each unique decoder layer's cross-attention K/V."""
        feats, mask = visual["feats"], visual["mask"]
        keep = mask.bool().any(0)
        if not bool(keep.all()):  # clip_att: drop trailing columns that are padding in every row
            n = int(keep.nonzero().max()) + 1
            visual = {k: v[:, :n] for k, v in visual.items()}
            feats, mask = visual["feats"], visual["mask"]
        key_mask = mask.bool()[:, None, None, :]  # (B, 1, 1, N)
        x = self.src_embed(feats)
        geometry = self.geometry(visual)
        for u in self.enc_order:
            x = self.encoder_layers[u](x, key_mask, geometry)
        enc = self.encoder_norm(x)
        memory: Memory = {"mask": mask}
        if not bool(mask.bool().all()):  # some padding: the (B, 1, 1, N) key mask, made once, not once per step
            memory["cross_mask"] = mask.bool()[:, None, None, :]
        for u, layer in enumerate(self.decoder_layers):
            k, v = layer.cross_attn.keys_values(enc)
            # contiguous heads, made once per image: each decoding step's attention over them then takes the fused
            # CPU kernel instead of the strided fallback (bmm, softmax and copies: ~40 % of a sparse ORT step's ops)
            memory[f"ck{u}"] = k.contiguous()
            if v is not k:
                memory[f"cv{u}"] = v.contiguous()
        return memory

    @staticmethod
    def cross_kv(memory: Memory, u: int) -> tuple[Tensor, Tensor]:
        """Unique decoder layer ``u``'s cross-attention (K, V) heads from ``prepare`` (V *is* K when shared)."""
        k = memory[f"ck{u}"]
        return k, memory.get(f"cv{u}", k)

    @staticmethod
    def cross_mask(memory: Memory) -> Tensor | None:
        """Cross-attention key mask (B, 1, 1, N), which ``prepare`` puts in memory whenever a region is padding; None
        otherwise (every score counts: batch-1 decoding takes the unmasked attention kernel)."""
        return memory.get("cross_mask")

    # -------------------------------------------------------------------------------------------------- decoder
    def _embed(self, tokens: Tensor, start: int) -> Tensor:
        return drop(self.embed_dropout, self.pos(self.embed(tokens) * self.embed_scale, start))

    def _logprobs(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.generator(self.decoder_norm(x)).float(), dim=-1)

    def forward(self, memory: Memory, tokens: Tensor) -> Tensor:
        """Teacher forcing: (B, T) tokens starting with ``<bos>`` → (B, T, V) log-probs."""
        t = tokens.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=tokens.device).tril()
        self_mask = causal[None, None] & (tokens != self.pad_id)[:, None, None, :]
        cross_mask = self.cross_mask(memory)
        x = self._embed(tokens, 0)
        for u in self.dec_order:
            x = self.decoder_layers[u](x, self_mask, self.cross_kv(memory, u), cross_mask)
        return self._logprobs(x)

    def init_state(self, memory: Memory) -> State:
        """Empty self-attention caches, one per depth: ``k{i}`` (and ``v{i}`` unless K/V are shared), (B, h, 0, d_k)."""
        mask = memory["mask"]
        empty = mask.new_zeros(mask.shape[0], self.heads, 0, self.d_k)
        state: State = {}
        for i in range(len(self.dec_order)):
            state[f"k{i}"] = empty
            if not self.kv_shared:
                state[f"v{i}"] = empty
        return state

    def stepper(self) -> Callable[[Memory, Tensor, State], tuple[Tensor, State]]:
        """``step`` for one decoding pass: in eval mode without autograd, the weights cannot change until it ends, so
        the step is bound to them once (:mod:`~sparsecap_engine.models.transformer_stepper`); else ``step`` itself."""
        if self.training or torch.is_grad_enabled():
            return self.step
        from sparsecap_engine.models.transformer_stepper import BoundStep

        return BoundStep(self)

    def step(self, memory: Memory, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One token per row (B,) → log-probs (B, V); appends this step's K/V to each depth's own cache (on rows, not
        (B, 1, d) sequences: :mod:`~sparsecap_engine.models.transformer_stepper`)."""
        from sparsecap_engine.models.transformer_stepper import BoundStep

        return BoundStep(self)(memory, tokens, state)
