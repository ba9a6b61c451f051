"""Compact sparse checkpoints (format ``sparsecap-sparse-1``): safetensors + JSON metadata, nothing unpickled.

Each pruned weight matrix is stored in the smallest of

- ``bitmask``: ``<name>::bits`` (uint8, one bit per element, row-major, little bit order) + ``<name>::values``;
- ``csr``: ``<name>::crow`` (row pointers, int16 when nnz fits, else int32) + ``<name>::col`` (int16 when the width
  fits, else int32) + ``<name>::values``;
- ``dense`` (when neither pays, e.g. a layer left unpruned).

Values are fp32 (bit-exact round trip) or fp16. Every other tensor is stored dense under its own name (fp16 too with
``values="fp16"``, except integer/bool buffers). Positional tables are non-persistent buffers and never reach a state
dict. Metadata: ``format``, ``version``, ``model``, ``vocab``, ``encoder``, ``sparsity`` summary, ``storage`` (name →
kind, shape, dtype, nnz, bytes) and ``aliases`` (tensors sharing storage are stored once).
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
VERSION = 1
SEP = "::"
#: without a model at hand, a 2-D float tensor at least this sparse is treated as pruned
DEFAULT_THRESHOLD = 0.5
I16_MAX = torch.iinfo(torch.int16).max

_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)}
VALUE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


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


def storage_sizes(shape: tuple[int, ...], nnz: int, value_bytes: int) -> dict[str, int]:
    """Bytes each storage would take for a 2-D tensor of ``shape`` with ``nnz`` non-zeros."""
    rows, cols = shape[0], int(math.prod(shape[1:]))
    numel = rows * cols
    col_b = index_dtype(cols - 1).itemsize
    ptr_b = index_dtype(nnz).itemsize
    return {
        "dense": numel * value_bytes,
        "bitmask": (numel + 7) // 8 + nnz * value_bytes,
        "csr": (rows + 1) * ptr_b + nnz * (col_b + value_bytes),
    }


def choose_storage(shape: tuple[int, ...], nnz: int, value_bytes: int) -> str:
    """The smallest of bitmask / CSR (dense only when neither is smaller than it); ties go to bitmask."""
    sizes = storage_sizes(shape, nnz, value_bytes)
    best = min(("bitmask", "csr"), key=lambda k: (sizes[k], k != "bitmask"))
    return best if sizes[best] < sizes["dense"] else "dense"


def encode_tensor(name: str, t: Tensor, vdtype: torch.dtype) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """One pruned tensor → its stored parts and its ``storage`` entry."""
    t = t.detach().to("cpu").contiguous()
    shape = tuple(t.shape)
    mat = t.reshape(shape[0], -1)
    nz = mat != 0
    nnz = int(nz.sum())
    kind = choose_storage(shape, nnz, vdtype.itemsize)
    entry: dict[str, Any] = {"kind": kind, "shape": list(shape), "dtype": str(t.dtype).removeprefix("torch."),
                             "nnz": nnz}
    if kind == "dense":
        parts = {name: t.to(vdtype)}
    elif kind == "bitmask":
        parts = {f"{name}{SEP}bits": pack_bits(nz), f"{name}{SEP}values": mat[nz].to(vdtype)}
    else:
        crow = torch.zeros(shape[0] + 1, dtype=torch.int64)
        crow[1:] = nz.sum(1).cumsum(0)
        cols = nz.nonzero()[:, 1]
        parts = {
            f"{name}{SEP}crow": crow.to(index_dtype(nnz)),
            f"{name}{SEP}col": cols.to(index_dtype(mat.shape[1] - 1)),
            f"{name}{SEP}values": mat[nz].to(vdtype),
        }
    entry["bytes"] = sum(p.numel() * p.element_size() for p in parts.values())
    return parts, entry


def decode_tensor(name: str, tensors: dict[str, Tensor], entry: dict[str, Any]) -> Tensor:
    """Stored parts of one tensor → the dense tensor in its original dtype."""
    kind, shape = entry["kind"], tuple(int(s) for s in entry["shape"])
    dtype = getattr(torch, str(entry.get("dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unsupported dtype {entry.get('dtype')!r}")
    if kind == "dense":
        return tensors[name].to(dtype).reshape(shape)
    rows, cols = shape[0], int(math.prod(shape[1:]))
    values = tensors[f"{name}{SEP}values"].to(dtype)
    if kind == "bitmask":
        bits = tensors[f"{name}{SEP}bits"]
        if bits.numel() != (rows * cols + 7) // 8:
            raise ValueError(f"{name}: bitmask of {bits.numel()} bytes does not match its shape {list(shape)}")
        mask = unpack_bits(bits, rows * cols)
        if int(mask.sum()) != values.numel():
            raise ValueError(f"{name}: bitmask has {int(mask.sum())} bits set for {values.numel()} values")
        out = torch.zeros(rows * cols, dtype=dtype)
        out[mask] = values
        return out.reshape(shape)
    if kind == "csr":
        crow = tensors[f"{name}{SEP}crow"].long()
        col = tensors[f"{name}{SEP}col"].long()
        counts = crow[1:] - crow[:-1]
        if crow.numel() != rows + 1 or int(crow[-1]) != values.numel() or col.numel() != values.numel():
            raise ValueError(f"{name}: CSR parts do not match its shape {list(shape)}")
        if bool((counts < 0).any()) or (col.numel() and (int(col.min()) < 0 or int(col.max()) >= cols)):
            raise ValueError(f"{name}: CSR indices out of range")
        row = torch.repeat_interleave(torch.arange(rows), counts)
        out = torch.zeros(rows, cols, dtype=dtype)
        out[row, col] = values
        return out.reshape(shape)
    raise ValueError(f"{name}: unknown storage kind {kind!r}")


# --------------------------------------------------------------------------------------------------------------------
# whole checkpoints


def pruned_names_of(meta: dict[str, Any]) -> list[str] | None:
    """Names of the prunable tensors of the model described in ``meta`` (None when it cannot be built)."""
    from sparsecap_engine.models.registry import build_model
    from sparsecap_engine.pruning.scope import prunable

    try:
        config = {k: v for k, v in dict(meta["model"]).items() if k != "vocab_size"}
        config["encoder_args"] = {k: v for k, v in config.get("encoder_args", {}).items() if k != "weights"}
        vocab_size = int(meta["model"].get("vocab_size") or 0)
        if vocab_size <= 0:
            return None
        with torch.device("meta"):
            model = build_model(config, vocab_size)
    except Exception:  # noqa: BLE001 - no model at hand: fall back to the sparsity threshold
        return None
    return list(prunable(model))


def encode_state(
    state: dict[str, Tensor],
    values: str = "fp32",
    pruned: list[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, str]]:
    """State dict → (stored tensors, storage per tensor, aliases).

    ``pruned`` names the pruned tensors; when None, every 2-D+ float tensor with sparsity ≥ ``threshold`` is."""
    if values not in VALUE_DTYPES:
        raise UsageError(f"--values must be fp16 or fp32, got {values!r}")
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
            parts, entry = encode_tensor(name, t, vdtype if values == "fp16" else t.dtype)
            entry["pruned"] = True
        else:
            stored = t.to(vdtype) if values == "fp16" and is_float else t
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
                pruned: list[str] | None = None, threshold: float = DEFAULT_THRESHOLD) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and its metadata (``meta`` must hold ``model`` and ``vocab``)."""
    if pruned is None and "model" in meta:
        pruned = pruned_names_of(meta)
    tensors, storage, aliases = encode_state(state, values, pruned, threshold)
    summary = {**(meta.get("sparsity") or {}), **sparsity_summary(storage)}
    full = {**meta, "format": FORMAT, "version": VERSION, "values": values, "storage": storage,
            "aliases": aliases, "sparsity": summary}
    return pack(tensors, full), full


def save_sparse(path: Path, state: dict[str, Tensor], meta: dict[str, Any], values: str = "fp32",
                pruned: list[str] | None = None, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Write a sparse checkpoint atomically; returns its metadata."""
    data, full = pack_sparse(state, meta, values, pruned, threshold)
    atomic_write_bytes(Path(path), data)
    return full


def decode_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Tensor]:
    """Stored tensors + metadata → dense state dict (the ``FORMAT_READERS`` entry for this format)."""
    if meta.get("version") != VERSION:
        raise CheckpointError(f"sparse checkpoint version {meta.get('version')!r} is not supported (need {VERSION})")
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

    ckpt = checkpoint_file(src)
    check_target(Path(out))  # a folder or a FIFO named by --out: refused before any work
    state, meta = read_state(ckpt)
    if "model" not in meta or "vocab" not in meta:
        raise CheckpointError(f"{ckpt}: metadata lacks the model config or vocabulary")
    load_model(ckpt)  # what is exported must load: its metadata describes a model its weights fit
    keep = {k: v for k, v in meta.items() if k not in ("format", "version", "storage", "aliases", "values")}
    return save_sparse(Path(out), state, keep, values)


def register() -> None:
    from sparsecap_engine.checkpoint.model_io import FORMAT_READERS

    FORMAT_READERS[FORMAT] = decode_state


register()
