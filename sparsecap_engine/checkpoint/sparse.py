"""Compact sparse checkpoints (format ``sparsecap-sparse-1``): safetensors + JSON metadata, nothing unpickled.

Each pruned weight tensor is stored in the smallest of

- ``bitmask``: ``<name>::bits`` (uint8, one bit per element, row-major, little bit order) + ``<name>::values``;
- ``csr``: ``<name>::crow`` (row pointers, int16 when nnz fits, else int32) + ``<name>::col`` (int16 when the width
  fits, else int32) + ``<name>::values``;
- ``rice`` (version 2): the gaps of the flattened tensor (the zeros before each non-zero since the previous one, then
  the zeros after the last), Rice coded with the per-tensor parameter ``k`` (in the entry): ``<name>::q`` (each
  quotient ``gap >> k`` in unary, a 1 per unit and a 0 ending it, packed like ``bits``) + ``<name>::r`` (the ``k``
  low bits of each gap, packed) + ``<name>::values``; within a few % of the entropy bound of the positions for a
  random mask at any density;
- ``dense`` (when none pays, e.g. a layer left unpruned).

Values (the file's ``values``) are fp32 (bit-exact round trip), fp16, or (version 2) ``int8``: pruned tensors as
symmetric int8 with one scale per output row (per tensor for 1-D) in ``<name>::scale`` (fp16, fp32 when a scale does
not fit fp16), dequantised on load to the tensor's dtype, ``|w − ŵ| ≤ scale / 2``; weights that round to 0 are
dropped from the positions (the entry's ``zeroed`` counts them) and the entry says ``"values": "int8"``. A pruned
tensor with so few non-zeros per row that its scales cost more than int8 saves is stored fp16 instead. Every other
tensor is stored dense under its own name (fp16 with ``values="fp16"`` or ``"int8"``, except integer/bool buffers).
Positional tables are non-persistent buffers and never reach a state dict. Metadata: ``format``, ``version`` (2;
version-1 files — no ``rice``, no ``int8`` — still load), ``model``, ``vocab``, ``encoder``, ``values``, ``sparsity``
summary, ``storage`` (name → kind, shape, dtype, nnz, bytes, pruned; ``k`` for rice; ``values`` and ``zeroed`` for
int8) and ``aliases`` (tensors sharing storage are stored once).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparsecap_engine.atomic import atomic_write_bytes
from sparsecap_engine.checkpoint.dense import dedup_state, expand_aliases, pack
from sparsecap_engine.errors import CheckpointError, UsageError

FORMAT = "sparsecap-sparse-1"
#: the version written; ``READABLE_VERSIONS`` are the ones read (1: bitmask / csr / dense, fp32 or fp16 values)
VERSION = 2
READABLE_VERSIONS = (1, 2)
SEP = "::"
#: without a model at hand, a 2-D float tensor at least this sparse is treated as pruned
DEFAULT_THRESHOLD = 0.5
I16_MAX = torch.iinfo(torch.int16).max
#: the index codings a pruned tensor may get, in tie-break order (dense when none is smaller)
SPARSE_KINDS = ("bitmask", "csr", "rice")
INT8_MAX = 127
#: fp16 scales are used when every non-zero scale lies where rounding it up to fp16 costs ≤ 2⁻⁷ of it (subnormals
#: from 2⁻¹⁷ on: at most one of the 127 levels), else fp32
_F16_MIN, _F16_MAX = 2.0**-17, 65504.0 / (1 + 2.0**-10)

_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)}
VALUE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.int8}


def check_values(values: str) -> None:
    """UsageError unless ``values`` names a value format."""
    if values not in VALUE_DTYPES:
        raise UsageError(f"--values must be fp32 (exact), fp16 or int8 (lossy, per-row scales), got {values!r}")


# --------------------------------------------------------------------------------------------------------------------
# encoding one tensor


def pack_bits(mask: Tensor) -> Tensor:
    """Bool tensor → uint8 (8 elements per byte, row-major, bit i of byte k = element 8k + i)."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = torch.tensor([1 << i for i in range(8)], dtype=torch.uint8)
    return (flat.view(-1, 8) * weights).sum(1, dtype=torch.uint8)


def unpack_bits(bits: Tensor, numel: int) -> Tensor:
    """Inverse of :func:`pack_bits`: the first ``numel`` bits as a bool vector."""
    shifts = torch.arange(8, dtype=torch.uint8)
    return ((bits.to(torch.uint8).unsqueeze(1) >> shifts) & 1).reshape(-1)[:numel].bool()


def index_dtype(limit: int) -> torch.dtype:
    """int16 when every index ≤ ``limit`` fits, else int32."""
    return torch.int16 if limit <= I16_MAX else torch.int32


def _matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of the row-major matrix view CSR uses: first dimension × the rest (a 1-D tensor is a column)."""
    if not shape:
        return 1, 1
    return shape[0], int(math.prod(shape[1:]))


def scale_rows(shape: tuple[int, ...]) -> int:
    """How many int8 scales a tensor gets: one per output row (first dimension) for 2-D+, one for 1-D / 0-D."""
    return shape[0] if len(shape) >= 2 else 1


def storage_sizes(shape: tuple[int, ...], nnz: int, value_bytes: int) -> dict[str, int]:
    """Bytes each position-free storage would take for a tensor of ``shape`` with ``nnz`` non-zeros (``rice``
    depends on where the non-zeros are: :func:`rice_bytes`)."""
    rows, cols = _matrix_shape(shape)
    numel = rows * cols
    col_b = index_dtype(cols - 1).itemsize
    ptr_b = index_dtype(nnz).itemsize
    return {
        "dense": numel * value_bytes,
        "bitmask": (numel + 7) // 8 + nnz * value_bytes,
        "csr": (rows + 1) * ptr_b + nnz * (col_b + value_bytes),
    }


def choose_storage(shape: tuple[int, ...], nnz: int, value_bytes: int, extra: dict[str, int] | None = None,
                   kinds: tuple[str, ...] = SPARSE_KINDS) -> str:
    """The smallest of ``kinds`` (sizes from :func:`storage_sizes`, plus ``extra`` totals such as ``{"rice": n}``; a
    kind without a size is skipped); dense only when none is smaller than it; ties go to the earlier kind."""
    sizes = {**storage_sizes(shape, nnz, value_bytes), **(extra or {})}
    candidates = [k for k in kinds if k in sizes]
    if not candidates:
        return "dense"
    best = min(candidates, key=lambda k: (sizes[k], candidates.index(k)))
    return best if sizes[best] < sizes["dense"] else "dense"


# --- Rice-coded gaps -------------------------------------------------------------------------------------------------


def gaps_of(positions: Tensor, numel: int) -> Tensor:
    """Sorted flat positions of the non-zeros of a tensor of ``numel`` elements → the zeros before each non-zero
    since the previous one, then the zeros after the last (``n + 1`` gaps, int64; they sum to ``numel − n``)."""
    positions = positions.long()
    bounds = torch.cat([positions.new_full((1,), -1), positions, positions.new_full((1,), numel)])
    return bounds[1:] - bounds[:-1] - 1


def rice_parameter(gaps: Tensor) -> tuple[int, int]:
    """The Rice parameter ``k`` giving the fewest bits for ``gaps`` and those bits (quotient + remainder streams)."""
    n = gaps.numel()
    if n == 0:
        return 0, 0
    top = int(gaps.max()).bit_length() + 1
    best = (0, 0)
    for k in range(top + 1):
        bits = int((gaps >> k).sum()) + n * (1 + k)
        if k == 0 or bits < best[1]:
            best = (k, bits)
    return best


def rice_bytes(gaps: Tensor, k: int | None = None) -> int:
    """Bytes of the two Rice streams for ``gaps`` (with the best ``k`` unless given)."""
    n = gaps.numel()
    if k is None:
        k = rice_parameter(gaps)[0]
    return (int((gaps >> k).sum()) + n + 7) // 8 + (n * k + 7) // 8


def rice_encode(positions: Tensor, numel: int, k: int) -> tuple[Tensor, Tensor]:
    """Sorted flat positions → (unary quotient stream, ``k``-bit remainder stream) of their :func:`gaps_of`, both
    packed uint8. The last gap (the zeros after the last non-zero) makes the streams spell out the tensor's size."""
    gaps = gaps_of(positions, numel)
    q = gaps >> k
    ends = torch.cumsum(q + 1, 0) - 1  # the 0 that ends each quotient
    unary = torch.ones(int(ends[-1]) + 1, dtype=torch.bool)
    unary[ends] = False
    r = gaps & ((1 << k) - 1)
    rbits = ((r.unsqueeze(1) >> torch.arange(k, dtype=torch.int64)) & 1).bool()
    return pack_bits(unary), pack_bits(rbits)


def rice_decode(qbytes: Tensor, rbytes: Tensor, k: int, n: int, numel: int) -> Tensor:
    """Inverse of :func:`rice_encode`: the ``n`` sorted flat positions (ValueError when the streams do not describe
    ``n`` non-zeros in ``numel`` elements)."""
    if not 0 <= k <= 62:
        raise ValueError(f"Rice parameter {k} out of range")
    codes = n + 1
    if rbytes.numel() != (codes * k + 7) // 8:
        raise ValueError(f"Rice remainder stream of {rbytes.numel()} bytes for {codes} codes of {k} bits")
    unary = unpack_bits(qbytes, qbytes.numel() * 8)
    ends = (~unary).nonzero().reshape(-1)[:codes]
    if ends.numel() != codes or unary.numel() - int(ends[-1]) - 1 >= 8:
        raise ValueError("Rice quotient stream does not hold one code per value")
    q = ends - torch.cat([ends.new_full((1,), -1), ends[:-1]]) - 1
    rbits = unpack_bits(rbytes, codes * k).view(codes, k).long()
    r = (rbits << torch.arange(k, dtype=torch.int64)).sum(1) if k else torch.zeros(codes, dtype=torch.int64)
    bounds = torch.cumsum((q << k) + r + 1, 0) - 1  # each non-zero's position, then numel
    if int(bounds[-1]) != numel:
        raise ValueError(f"Rice streams describe {int(bounds[-1])} elements, the shape {numel}")
    return bounds[:-1]


# --- int8 values -----------------------------------------------------------------------------------------------------


def quantize_int8(t: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 with one scale per output row (per tensor for 1-D): ``(q, scale)`` with ``q`` of ``t``'s shape
    and ``|t − q · scale[row]| ≤ scale[row] / 2``. Scales are fp16 (rounded up, so no value clips) when every
    non-zero one is within fp16's range (to 2⁻¹⁷), else fp32."""
    srows = scale_rows(tuple(t.shape))
    mat = t.detach().to("cpu", torch.float32).reshape(srows, -1) if t.numel() else torch.zeros(srows, 0)
    amax = mat.abs().amax(1) if mat.shape[1] else torch.zeros(srows)
    scale = amax / INT8_MAX
    live = scale[scale > 0]
    if live.numel() == 0 or (float(live.min()) >= _F16_MIN and float(live.max()) <= _F16_MAX):
        half = scale.half()
        low = half.float() < scale
        half[low] = torch.nextafter(half[low], torch.tensor(float("inf"), dtype=torch.float16))
        stored = half
    else:
        stored = scale
    s = stored.float()
    q = torch.where(s[:, None] > 0, torch.round(mat / s.clamp_min(torch.finfo(torch.float32).tiny)[:, None]),
                    torch.zeros(()))
    return q.clamp_(-INT8_MAX, INT8_MAX).to(torch.int8).reshape(t.shape), stored


def dequantize_int8(q: Tensor, scale: Tensor, rows: Tensor, dtype: torch.dtype) -> Tensor:
    """int8 values and the scale row each one belongs to → values of ``dtype``."""
    return (q.float() * scale.float()[rows]).to(dtype)


# --- one tensor ------------------------------------------------------------------------------------------------------


def encode_tensor(name: str, t: Tensor, vdtype: torch.dtype,
                  kinds: tuple[str, ...] = SPARSE_KINDS) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """One pruned tensor → its stored parts and its ``storage`` entry. ``vdtype`` is the value dtype (``torch.int8``:
    quantised with per-row scales, or fp16 where that is not bigger); ``kinds`` the index codings allowed (the
    smallest wins, dense if none pays)."""
    t = t.detach().to("cpu").contiguous()
    shape = tuple(t.shape)
    rows, cols = _matrix_shape(shape)
    quant = vdtype == torch.int8
    entry: dict[str, Any] = {"shape": list(shape), "dtype": str(t.dtype).removeprefix("torch.")}
    parts: dict[str, Tensor] = {}
    if quant:
        q, scale = quantize_int8(t)
        flat = q.reshape(-1)
        parts[f"{name}{SEP}scale"] = scale
        entry["values"] = "int8"
        entry["zeroed"] = int((t != 0).sum()) - int((q != 0).sum())
    else:
        flat = t.reshape(-1)
    nz = flat != 0
    positions = nz.nonzero().reshape(-1)
    nnz = positions.numel()
    extra, k = {}, 0
    if "rice" in kinds:
        gaps = gaps_of(positions, t.numel())
        k = rice_parameter(gaps)[0]
        extra["rice"] = rice_bytes(gaps, k) + nnz * vdtype.itemsize
    kind = choose_storage(shape, nnz, vdtype.itemsize, extra, kinds)
    entry = {"kind": kind, **entry, "nnz": nnz}
    values = flat[positions].to(vdtype)
    if kind == "dense":
        parts[name] = (q if quant else t).to(vdtype)
    elif kind == "bitmask":
        parts.update({f"{name}{SEP}bits": pack_bits(nz), f"{name}{SEP}values": values})
    elif kind == "csr":
        crow = torch.zeros(rows + 1, dtype=torch.int64)
        crow[1:] = nz.view(rows, cols).sum(1).cumsum(0)
        parts.update({
            f"{name}{SEP}crow": crow.to(index_dtype(nnz)),
            f"{name}{SEP}col": (positions % max(cols, 1)).to(index_dtype(cols - 1)),
            f"{name}{SEP}values": values,
        })
    else:
        qs, rs = rice_encode(positions, t.numel(), k)
        entry["k"] = k
        parts.update({f"{name}{SEP}q": qs, f"{name}{SEP}r": rs, f"{name}{SEP}values": values})
    entry["bytes"] = sum(p.numel() * p.element_size() for p in parts.values())
    if quant:  # the scales (2 bytes a row) can cost more than int8 saves on a tensor with few non-zeros per row
        half = encode_tensor(name, t, torch.float16, kinds)
        if half[1]["bytes"] <= entry["bytes"]:
            return half
    return parts, entry


def _positions(name: str, tensors: dict[str, Tensor], entry: dict[str, Any], shape: tuple[int, ...],
               n: int) -> Tensor:
    """The sorted flat positions of a sparse-stored tensor's ``n`` values."""
    kind = entry["kind"]
    rows, cols = _matrix_shape(shape)
    numel = rows * cols
    if kind == "bitmask":
        bits = tensors[f"{name}{SEP}bits"]
        if bits.numel() != (numel + 7) // 8:
            raise ValueError(f"{name}: bitmask of {bits.numel()} bytes does not match its shape {list(shape)}")
        positions = unpack_bits(bits, numel).nonzero().reshape(-1)
        if positions.numel() != n:
            raise ValueError(f"{name}: bitmask has {positions.numel()} bits set for {n} values")
        return positions
    if kind == "csr":
        crow = tensors[f"{name}{SEP}crow"].long()
        col = tensors[f"{name}{SEP}col"].long()
        if crow.numel() != rows + 1 or int(crow[-1]) != n or col.numel() != n:
            raise ValueError(f"{name}: CSR parts do not match its shape {list(shape)}")
        counts = crow[1:] - crow[:-1]
        if bool((counts < 0).any()) or (col.numel() and (int(col.min()) < 0 or int(col.max()) >= cols)):
            raise ValueError(f"{name}: CSR indices out of range")
        return torch.repeat_interleave(torch.arange(rows), counts) * cols + col
    if kind == "rice":
        try:
            return rice_decode(tensors[f"{name}{SEP}q"], tensors[f"{name}{SEP}r"], int(entry["k"]), n, numel)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    raise ValueError(f"{name}: unknown storage kind {kind!r}")


def decode_tensor(name: str, tensors: dict[str, Tensor], entry: dict[str, Any]) -> Tensor:
    """Stored parts of one tensor → the dense tensor in its original dtype."""
    kind, shape = entry["kind"], tuple(int(s) for s in entry["shape"])
    dtype = getattr(torch, str(entry.get("dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unsupported dtype {entry.get('dtype')!r}")
    quant = entry.get("values") == "int8"
    if entry.get("values") not in (None, "int8"):
        raise ValueError(f"{name}: unknown value format {entry.get('values')!r}")
    numel = int(math.prod(shape))
    srows = scale_rows(shape)
    per_row = numel // srows if srows else 0
    scale = None
    if quant:
        scale = tensors[f"{name}{SEP}scale"]
        if scale.numel() != srows or not scale.is_floating_point():
            raise ValueError(f"{name}: {scale.numel()} scales for {srows} rows")
    if kind == "dense":
        stored = tensors[name]
        if scale is None:
            return stored.to(dtype).reshape(shape)
        if stored.dtype != torch.int8 or stored.numel() != numel:
            raise ValueError(f"{name}: int8 dense values do not match its shape {list(shape)}")
        rows = torch.arange(srows).repeat_interleave(per_row)
        return dequantize_int8(stored.reshape(-1), scale, rows, dtype).reshape(shape)
    values = tensors[f"{name}{SEP}values"]
    positions = _positions(name, tensors, entry, shape, values.numel())
    if scale is not None:
        if values.dtype != torch.int8:
            raise ValueError(f"{name}: int8 entry with {values.dtype} values")
        values = dequantize_int8(values, scale, positions // max(per_row, 1), dtype)
    out = torch.zeros(numel, dtype=dtype)
    out[positions] = values.to(dtype)
    return out.reshape(shape)


# --------------------------------------------------------------------------------------------------------------------
# whole checkpoints


def pruned_names_of(meta: dict[str, Any]) -> list[str] | None:
    """Names of the prunable tensors of the model described in ``meta`` (None when it cannot be built)."""
    from sparsecap_engine.models.registry import build_shapes
    from sparsecap_engine.pruning.scope import prunable

    try:
        config = {k: v for k, v in dict(meta["model"]).items() if k != "vocab_size"}
        config["encoder_args"] = {k: v for k, v in config.get("encoder_args", {}).items() if k != "weights"}
        vocab_size = int(meta["model"].get("vocab_size") or 0)
        if vocab_size <= 0:
            return None
        model = build_shapes(config, vocab_size)
    except Exception:  # noqa: BLE001 - no model at hand: fall back to the sparsity threshold
        return None
    return list(prunable(model))


def encode_state(
    state: dict[str, Tensor],
    values: str = "fp32",
    pruned: list[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    kinds: tuple[str, ...] = SPARSE_KINDS,
) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, str]]:
    """State dict → (stored tensors, storage per tensor, aliases).

    ``pruned`` names the pruned tensors; when None, every 2-D+ float tensor with sparsity ≥ ``threshold`` is.
    ``values="int8"`` quantises the pruned tensors (the others are stored fp16); ``kinds`` limits the index codings
    (e.g. ``("bitmask", "csr")``: what version 1 wrote)."""
    check_values(values)
    unknown = [k for k in kinds if k not in SPARSE_KINDS]
    if unknown:
        raise UsageError(f"unknown storage kind {unknown[0]!r}; choose from {', '.join(SPARSE_KINDS)}")
    vdtype = VALUE_DTYPES[values]
    tensors, aliases = dedup_state(state)
    wanted = set(pruned or ())
    for alias, target in aliases.items():  # a tied weight may be named by its alias in ``pruned``
        if alias in wanted:
            wanted.add(target)
    out: dict[str, Tensor] = {}
    storage: dict[str, Any] = {}
    for name, t in tensors.items():
        if SEP in name:
            raise CheckpointError(f"tensor name {name!r} contains {SEP!r}")
        is_float = t.is_floating_point()
        if pruned is not None:
            is_pruned = name in wanted and is_float and t.dim() >= 2
        else:
            is_pruned = is_float and t.dim() >= 2 and t.numel() > 0 and float((t == 0).float().mean()) >= threshold
        if is_pruned and t.numel():
            parts, entry = encode_tensor(name, t, t.dtype if values == "fp32" else vdtype, kinds)
            entry["pruned"] = True
        else:
            stored = t.to(torch.float16) if values != "fp32" and is_float else t
            parts = {name: stored.contiguous()}
            entry = {"kind": "dense", "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
                     "nnz": int((t != 0).sum()), "bytes": stored.numel() * stored.element_size(), "pruned": False}
        out.update(parts)
        storage[name] = entry
    return out, storage, aliases


def sparsity_summary(storage: dict[str, Any], state: dict[str, Tensor] | None = None) -> dict[str, Any]:
    """Sparsity over the pruned tensors and over every float tensor stored (from ``storage`` entries)."""
    p_numel = sum(math.prod(e["shape"]) for e in storage.values() if e.get("pruned"))
    p_nnz = sum(e["nnz"] for e in storage.values() if e.get("pruned"))
    floats = [e for e in storage.values() if e["dtype"] in _DTYPES]
    a_numel = sum(math.prod(e["shape"]) for e in floats)
    a_nnz = sum(e["nnz"] for e in floats)
    return {
        "sparsity": 1 - p_nnz / p_numel if p_numel else 0.0,
        "nnz": p_nnz,
        "numel": p_numel,
        "all_sparsity": 1 - a_nnz / a_numel if a_numel else 0.0,
        "all_nnz": a_nnz,
        "all_numel": a_numel,
    }


def pack_sparse(state: dict[str, Tensor], meta: dict[str, Any], values: str = "fp32",
                pruned: list[str] | None = None, threshold: float = DEFAULT_THRESHOLD,
                kinds: tuple[str, ...] = SPARSE_KINDS) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and its metadata (``meta`` must hold ``model`` and ``vocab``)."""
    if pruned is None and "model" in meta:
        pruned = pruned_names_of(meta)
    tensors, storage, aliases = encode_state(state, values, pruned, threshold, kinds)
    summary = {**(meta.get("sparsity") or {}), **sparsity_summary(storage)}
    full = {**meta, "format": FORMAT, "version": VERSION, "values": values, "storage": storage,
            "aliases": aliases, "sparsity": summary}
    return pack(tensors, full), full


def save_sparse(path: Path, state: dict[str, Tensor], meta: dict[str, Any], values: str = "fp32",
                pruned: list[str] | None = None, threshold: float = DEFAULT_THRESHOLD,
                kinds: tuple[str, ...] = SPARSE_KINDS) -> dict[str, Any]:
    """Write a sparse checkpoint atomically; returns its metadata."""
    data, full = pack_sparse(state, meta, values, pruned, threshold, kinds)
    atomic_write_bytes(Path(path), data)
    return full


def decode_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Tensor]:
    """Stored tensors + metadata → dense state dict (the ``FORMAT_READERS`` entry for this format)."""
    if meta.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"sparse checkpoint version {meta.get('version')!r} is not supported (this sparsecap "
                              f"reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    storage = meta.get("storage")
    if not isinstance(storage, dict):
        raise CheckpointError("sparse checkpoint metadata lacks its storage table")
    try:
        state = {name: decode_tensor(name, tensors, entry) for name, entry in storage.items()}
        return expand_aliases(state, meta.get("aliases", {}))
    except KeyError as exc:
        raise CheckpointError(f"sparse checkpoint lacks tensor {exc}") from None
    except (ValueError, RuntimeError, TypeError, IndexError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"corrupt sparse checkpoint: {first}") from None


def export_sparse(src: Path, out: Path, values: str = "fp32") -> dict[str, Any]:
    """Any checkpoint (or run directory) → compact sparse file at ``out``; returns the new metadata."""
    from sparsecap_engine.atomic import check_target
    from sparsecap_engine.checkpoint.model_io import load_model, read_state
    from sparsecap_engine.checkpoint.source import checkpoint_file

    check_values(values)
    ckpt = checkpoint_file(src)
    check_target(Path(out))  # a folder or a FIFO named by --out: refused before any work
    state, meta = read_state(ckpt)
    if "model" not in meta or "vocab" not in meta:
        raise CheckpointError(f"{ckpt}: metadata lacks the model config or vocabulary")
    load_model(ckpt)  # what is exported must load: its metadata describes a model its weights fit
    return save_sparse(Path(out), state, _export_meta(meta), values)


def _export_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A source checkpoint's metadata less what the sparse writer sets itself."""
    return {k: v for k, v in meta.items() if k not in ("format", "version", "storage", "aliases", "values")}


def packed_size(src: Path, values: str) -> int:
    """Bytes the sparse file of checkpoint ``src`` would take with ``values`` (packed in memory, nothing written):
    what ``export --check`` compares a lossy file with."""
    from sparsecap_engine.checkpoint.model_io import read_state

    check_values(values)
    state, meta = read_state(Path(src))
    return len(pack_sparse(state, _export_meta(meta), values)[0])


def nonfinite_entries(tensors: dict[str, Tensor], meta: dict[str, Any]) -> list[str]:
    """Names of the tensors that would decode to a NaN or an infinity, found on the stored parts alone: a floating
    part (values, a dense tensor, int8 scales) that is not finite, or int8 scales so large that ``127 · scale``
    overflows the tensor's dtype. Malformed entries are left to :func:`decode_state`'s errors."""
    storage = meta.get("storage")
    if not isinstance(storage, dict):
        return []
    bad = []
    for name, entry in storage.items():
        if not isinstance(entry, dict):
            continue
        parts = [t for key in (name, f"{name}{SEP}values", f"{name}{SEP}scale")
                 if (t := tensors.get(key)) is not None and t.is_floating_point()]
        if any(not bool(torch.isfinite(t).all()) for t in parts):
            bad.append(name)
            continue
        scale = tensors.get(f"{name}{SEP}scale")
        dtype = getattr(torch, str(entry.get("dtype", "float32")), None)
        if scale is not None and scale.numel() and isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            if float(scale.float().abs().max()) * INT8_MAX > torch.finfo(dtype).max:
                bad.append(name)
    return bad


def register() -> None:
    from sparsecap_engine.checkpoint.model_io import FORMAT_FINITE_CHECKS, FORMAT_READERS

    FORMAT_READERS[FORMAT] = decode_state
    FORMAT_FINITE_CHECKS[FORMAT] = nonfinite_entries


register()
