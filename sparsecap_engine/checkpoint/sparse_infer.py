"""Sparse CPU inference: swap pruned layers of a loaded model for CSR-backed twins with the same call signature.

``sparsify(model)`` replaces, in place, every ``nn.Linear`` (incl. the output layer), ``nn.LSTMCell`` (both the
input and hidden products) and ``nn.Embedding`` whose weight is at least ``min_sparsity`` zeros by a module that keeps
the weight as a ``torch.sparse_csr_tensor`` and multiplies with ``torch.addmm`` (a CSR × dense product). The model
class and its interface (``encode`` / ``step`` / ``forward``) are unchanged, so greedy and beam search work as is.
Shared modules are swapped once (every parent then points at the same twin). Inference only (no autograd).
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

#: a layer is converted when at least this share of its weight is zero
DEFAULT_MIN_SPARSITY = 0.7
#: ``--sparse auto`` turns sparse kernels on when the model's pruned weights are at least this sparse (and on CPU)
AUTO_SPARSITY = 0.8
MODES = ("auto", "on", "off")


#: time of a CSR product over the dense one, per unit of weight density, by the rows multiplied at once (measured on
#: this project's 2-core CPU, 1 and 2 threads, 1024×640 to 4000×3048 weights at 70–99 % sparsity): the CSR product
#: pays while ``density × cost(rows) < 1``. Batch-1 decoding always does from 70 % zeros; eval's 64 images (192 rows
#: with beam 3) need about 80 %.
CSR_COST = ((1, 1.4), (16, 2.2), (64, 4.2), (192, 5.5), (2**62, 6.5))


#: up to this many rows, a CSR product is one matrix–vector product per row: MKL's CSR × dense kernel costs about twice
#: as much for one row and 1.0–1.9× as much for 2–3 (99 %-sparse 512² to 10001×512 weights, 1 thread); it pays from
#: about 5 rows on
FEW_ROWS = 3


def csr_pays(density: float, rows: int) -> bool:
    """Is a CSR product of a weight this dense faster than the dense product for ``rows`` rows at once?"""
    cost = next(c for r, c in CSR_COST if rows <= r)
    return density * cost < 1.0


class _Product:
    """``x @ Wᵀ + b`` by the faster kernel for the rows at hand: CSR, or the dense weight for a layer that keeps one
    (one dense enough for CSR to lose at some batch size: density × the largest cost ≥ 1). ``sparse=False`` (a
    weight below the conversion threshold) keeps the dense product only. ``weight``: the one the product uses."""

    def __init__(self, weight: Tensor, bias: Tensor | None, sparse: bool = True):
        weight = weight.detach()
        self.csr = to_csr(weight) if sparse else None
        self.density = self.csr.values().numel() / max(1, weight.numel()) if sparse else 1.0  # CSR: non-zeros only
        self.dense = weight if self.density * CSR_COST[-1][1] >= 1.0 else None  # shares the loaded storage
        self.bias = bias
        self.weight = self.csr if self.csr is not None else weight

    def __call__(self, x: Tensor) -> Tensor:
        rows = x.numel() // max(1, x.shape[-1])
        if self.dense is not None and (self.csr is None or not csr_pays(self.density, rows)):
            return F.linear(x, self.dense.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        return _csr_matmul(self.csr, x, self.bias)


def to_csr(weight: Tensor) -> Tensor:
    """Dense 2-D tensor → CSR with int32 indices (what the CPU kernels use: no index copy per product).

    Built from ``nonzero`` (row-major, so already CSR-ordered) and a row count: about 3× faster than
    ``Tensor.to_sparse_csr`` on a 99 %-sparse 4096² weight, which counts for the time to the first caption."""
    weight = weight.detach()
    rows_n, cols_n = weight.shape
    nz = weight.nonzero()
    index = torch.int32 if max(nz.shape[0], cols_n) < torch.iinfo(torch.int32).max else torch.int64
    rows, cols = nz.unbind(1)
    crow = torch.zeros(rows_n + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(rows, minlength=rows_n), 0, out=crow[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow.to(index), cols.to(index), weight[rows, cols], (rows_n, cols_n))


def _zeros(w: Tensor) -> int:
    """Number of zeros (one counting pass, no float copy of the weight)."""
    return w.numel() - int(torch.count_nonzero(w))


def _sparsity(w: Tensor) -> float:
    """Share of zeros."""
    return _zeros(w) / w.numel() if w.numel() else 0.0


def _csr_matmul(weight: Tensor, x: Tensor, bias: Tensor | None) -> Tensor:
    """``x @ weightᵀ + bias`` for x (..., in) with a CSR ``weight`` (out, in).

    Kept to a handful of ops: at batch 1 the per-call overhead, not the CSR product itself, dominates."""
    dtype = x.dtype
    x2 = x.reshape(-1, x.shape[-1])
    if dtype != weight.dtype:
        x2 = x2.to(weight.dtype)
    rows = x2.shape[0]
    if 0 < rows <= FEW_ROWS:  # batch-1 decoding, or beam search at batch 1: one matrix–vector product per row
        ys = [torch.mv(weight, r) if bias is None else torch.addmv(bias, weight, r)
              for r in ((x2.reshape(-1),) if rows == 1 else x2.unbind(0))]
        y = ys[0] if rows == 1 else torch.stack(ys)
    else:
        yt = torch.mm(weight, x2.t()).t()  # (rows, out), column-major
        # row-major out, always: a strided (B, out) result would cut attention heads that miss the fused kernel (beam
        # search's cross-attention fell back to the math path). The bias is added in the same pass that transposes.
        y = yt.contiguous() if bias is None else torch.add(yt, bias, out=yt.new_empty(yt.shape))
    y = y.view(*x.shape[:-1], weight.shape[0])
    return y if dtype == weight.dtype else y.to(dtype)


class SparseLinear(nn.Module):
    """``nn.Linear`` with a CSR weight: ``y = x Wᵀ + b`` as ``(W xᵀ)ᵀ + b``; a layer dense enough for CSR to lose on
    large batches also keeps its dense weight and uses it there (:func:`csr_pays`)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = None if linear.bias is None else linear.bias.detach().clone()
        self.product = _Product(linear.weight, self.bias)
        self.weight = self.product.weight
        csr, bias = self.product.csr, self.bias
        #: ``v ↦ W v + b`` for one row, bound once (None: the layer keeps only a dense weight)
        self.row: Callable[[Tensor], Tensor] | None = None if csr is None else (
            partial(torch.mv, csr) if bias is None else partial(torch.addmv, bias, csr))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 1 and self.row is not None:  # one vector (a batch-1 decoding step): the matrix–vector kernel
            return self.row(x)
        return self.product(x)

    #: an inference-only twin: calls go straight to ``forward``, without ``nn.Module``'s hook dispatch (a batch-1
    #: decoding step makes ~40 of these calls, and that dispatch cost more than a 99 %-sparse product)
    __call__ = forward

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, nnz={self.weight.values().numel()}"


class SparseLSTMCell(nn.Module):
    """``nn.LSTMCell`` with CSR ``W_ih`` and ``W_hh`` (gate order i, f, g, o as PyTorch)."""

    def __init__(self, cell: nn.LSTMCell, min_sparsity: float):
        super().__init__()
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        ih, hh = cell.weight_ih.detach(), cell.weight_hh.detach()
        b = None
        if cell.bias:
            b = (cell.bias_ih + cell.bias_hh).detach().clone()
        self.bias = b
        self.ih = _Product(ih, b, sparse=_sparsity(ih) >= min_sparsity)
        self.hh = _Product(hh, None, sparse=_sparsity(hh) >= min_sparsity)
        self.weight_ih, self.weight_hh = self.ih.weight, self.hh.weight

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if hx is None:
            z = x.new_zeros(x.shape[0], self.hidden_size)
            hx = (z, z)
        h, c = hx
        gates = self.ih(x) + self.hh(h)
        i, f, g, o = gates.chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return h_new, c_new


class SparseEmbedding(nn.Module):
    """``nn.Embedding`` whose table is kept in CSR form; a lookup scatters the non-zeros of the wanted rows."""

    #: up to this many tokens per call, rows are copied one by one (fewer ops than the vectorised scatter)
    FEW = 16

    def __init__(self, emb: nn.Embedding):
        super().__init__()
        self.num_embeddings, self.embedding_dim = emb.num_embeddings, emb.embedding_dim
        csr = to_csr(emb.weight)
        self.crow, self.col, self.values = csr.crow_indices(), csr.col_indices(), csr.values()
        self.crow_list: list[int] = self.crow.tolist()  # row starts as Python ints: a few lookups need no tensor ops

    def forward(self, tokens: Tensor) -> Tensor:
        flat = tokens.reshape(-1)
        if flat.numel() <= self.FEW:  # greedy / small beams: copy each wanted row's non-zeros directly
            out = self.values.new_zeros(flat.numel(), self.embedding_dim)
            for i, t in enumerate(flat.tolist()):
                s, e = self.crow_list[t], self.crow_list[t + 1]
                if e > s:
                    out[i].index_copy_(0, self.col[s:e].long(), self.values[s:e])
            return out.reshape(*tokens.shape, self.embedding_dim)
        start, end = self.crow[flat], self.crow[flat + 1]
        counts = end - start
        rows = torch.repeat_interleave(torch.arange(flat.numel()), counts)
        offset = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        idx = torch.repeat_interleave(start, counts) + offset
        out = self.values.new_zeros(flat.numel(), self.embedding_dim)
        out[rows, self.col[idx]] = self.values[idx]
        return out.reshape(*tokens.shape, self.embedding_dim)


def _fuse_attention(mha: nn.Module) -> bool:
    """Stack the CSR projections of a self-attention into the ``qkv_proj`` slot it declares (Q, K, V; Q and the
    shared KV; the shared QK and V): ``mha.qkv(x)`` then costs one sparse product instead of two or three."""
    projs = mha.stacked_projections()
    if not all(isinstance(p, SparseLinear) and p.bias is not None for p in projs):
        return False
    stacked = nn.Linear(projs[0].in_features, sum(p.out_features for p in projs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        stacked.weight.data = torch.cat([p.weight.to_dense() for p in projs])
    stacked.bias.data = torch.cat([p.bias for p in projs])  # type: ignore[misc]
    mha.qkv_proj = SparseLinear(stacked)
    return True


@dataclass
class SparsifyReport:
    """What ``sparsify`` converted: module name → its weight sparsity."""

    converted: dict[str, float]
    skipped: dict[str, float]


def _convert(module: nn.Module, min_sparsity: float) -> tuple[nn.Module | None, float]:
    if isinstance(module, nn.Linear):
        s = _sparsity(module.weight)
        return (SparseLinear(module) if s >= min_sparsity else None), s
    if isinstance(module, nn.LSTMCell):
        s = min(_sparsity(module.weight_ih), _sparsity(module.weight_hh))
        s_max = max(_sparsity(module.weight_ih), _sparsity(module.weight_hh))
        return (SparseLSTMCell(module, min_sparsity) if s_max >= min_sparsity else None), s
    if isinstance(module, nn.Embedding) and module.max_norm is None:
        s = _sparsity(module.weight)
        return (SparseEmbedding(module) if s >= min_sparsity else None), s
    return None, 0.0


@torch.no_grad()
def sparsify(model: nn.Module, min_sparsity: float = DEFAULT_MIN_SPARSITY) -> SparsifyReport:
    """Swap (in place) every Linear / LSTMCell / Embedding at least ``min_sparsity`` sparse for its CSR twin.

    The model must be on the CPU, in eval mode, without attached masks (bake them first)."""
    done: dict[int, nn.Module | None] = {}
    report = SparsifyReport({}, {})
    for pname, parent in list(model.named_modules(remove_duplicate=False)):
        for cname, child in list(parent.named_children()):
            if not isinstance(child, (nn.Linear, nn.LSTMCell, nn.Embedding)):
                continue
            if parametrize.is_parametrized(child) or next(child.parameters()).device.type != "cpu":
                continue
            full = f"{pname}.{cname}" if pname else cname
            if id(child) not in done:
                new, s = _convert(child, min_sparsity)
                done[id(child)] = new
                (report.converted if new is not None else report.skipped)[full] = s
            new = done[id(child)]
            if new is not None:
                setattr(parent, cname, new)
    _streamline(model)
    return report


def _streamline(model: nn.Module) -> None:
    """Per-op overhead, not arithmetic, dominates sparse batch-1 decoding: one fused CSR product for the Q/K/V of
    each self-attention whose projections were all converted (only ``self_attn`` calls ``qkv``)."""
    from sparsecap_engine.models.transformer import MultiHeadAttention

    for _, parent in list(model.named_modules(remove_duplicate=False)):
        attn = getattr(parent, "self_attn", None)
        if isinstance(attn, MultiHeadAttention) and attn.qkv_proj is None:
            _fuse_attention(attn)


def pruned_sparsity(model: nn.Module) -> float:
    """Sparsity over the model's prunable weight matrices."""
    from sparsecap_engine.pruning.scope import prunable

    zeros = total = 0
    for module, pname in prunable(model).values():
        w = getattr(module, pname)
        zeros += _zeros(w)
        total += w.numel()
    return zeros / total if total else 0.0


def want_sparse(mode: str, model: nn.Module, device: torch.device | str) -> bool:
    """``--sparse``: on, off, or auto (CPU and pruned weights ≥ ``AUTO_SPARSITY`` sparse)."""
    from sparsecap_engine.errors import UsageError

    if mode not in MODES:
        raise UsageError(f"--sparse must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off":
        return False
    cpu = torch.device(device).type == "cpu"
    if mode == "on":
        if not cpu:
            raise UsageError("--sparse on needs --device cpu (sparse kernels run on the CPU)")
        return True
    return cpu and pruned_sparsity(model) >= AUTO_SPARSITY


# --------------------------------------------------------------------------------------------------------------------
# latency


def example_batch(model: nn.Module, image_size: int = 64, regions: int = 36, seed: int = 0) -> dict[str, Tensor]:
    """One random input the model's encoder takes: an image, or ``regions`` region features with boxes."""
    g = torch.Generator().manual_seed(seed)
    if getattr(model, "takes_pixels", False):
        return {"images": torch.rand(1, 3, image_size, image_size, generator=g)}
    feat_dim = int(getattr(model.encoder, "out_dim", 2048))
    xy = torch.rand(1, regions, 2, generator=g) * 0.5
    wh = torch.rand(1, regions, 2, generator=g) * 0.5 + 0.05
    return {"att_feats": torch.randn(1, regions, feat_dim, generator=g), "att_masks": torch.ones(1, regions),
            "boxes": torch.cat([xy, xy + wh], -1)}


def time_ms(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@torch.no_grad()
def greedy_ids(model: nn.Module, batch: dict[str, Tensor], max_len: int = 16, bos: int = 2) -> Tensor:
    """Greedy caption ids for ``batch`` (a fixed length, no early stop: timing does not depend on the weights)."""
    from sparsecap_engine.models.base import step_function

    memory = model.encode(batch)
    state = model.init_state(memory)
    step = step_function(model)
    tokens = torch.full((next(iter(memory.values())).shape[0],), bos, dtype=torch.long)
    out = []
    for _ in range(max_len):
        logp, state = step(memory, tokens, state)
        tokens = logp.argmax(-1)
        out.append(tokens)
    return torch.stack(out, 1)


def bench_latency(dense: nn.Module, sparse: nn.Module, batch: dict[str, Tensor], threads: int = 1,
                  max_len: int = 16, repeat: int = 5) -> dict[str, float]:
    """Greedy captioning latency of one batch, dense vs sparse, with ``threads`` intra-op threads; ``same_tokens``
    says whether both wrote the same tokens (a speed-up of a model that decodes differently means nothing)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        same = torch.equal(greedy_ids(dense, batch, max_len), greedy_ids(sparse, batch, max_len))
        d = time_ms(lambda: greedy_ids(dense, batch, max_len), repeat)
        s = time_ms(lambda: greedy_ids(sparse, batch, max_len), repeat)
    finally:
        torch.set_num_threads(old)
    return {"threads": threads, "dense_ms": d, "sparse_ms": s, "speedup": d / s if s else float("nan"),
            "same_tokens": same}
