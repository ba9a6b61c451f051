"""Dense checkpoints: safetensors tensors + a JSON metadata header (format, model config, vocab, extra info).

Tensors that share storage (e.g. one layer used at several depths) are stored once; ``aliases`` in the metadata
maps the other names to the stored one. Nothing is unpickled on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from sparsecap_engine.atomic import atomic_write_bytes
from sparsecap_engine.errors import CheckpointError

FORMAT = "sparsecap-dense-1"


def dedup_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Keep one copy of tensors that share storage; return (tensors, alias → stored name)."""
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], str] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().to("cpu").contiguous().clone()
    return tensors, aliases


def pack(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> bytes:
    """Serialise tensors with every metadata value JSON-encoded (safetensors metadata is str → str)."""
    return st_save(tensors, metadata={k: json.dumps(v) for k, v in meta.items()})


def read_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read any sparsecap safetensors file → (tensors, decoded metadata), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        raw_meta = header.get("__metadata__", {}) or {}
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"not a readable sparsecap checkpoint: {path} ({first})") from None
    if "format" not in meta:
        raise CheckpointError(f"not a sparsecap checkpoint (no format in header): {path}")
    if not isinstance(meta["format"], str):
        raise CheckpointError(f"{path}: malformed header (format is not a string)")
    aliases = meta.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise CheckpointError(f"{path}: malformed header (aliases must map names to names)")
    if meta["format"] == FORMAT and not all(v in tensors for v in aliases.values()):
        raise CheckpointError(f"{path}: malformed header (an alias names a tensor that is not stored)")
    return tensors, meta


def save_dense(path: Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write a dense checkpoint atomically. ``meta`` must hold ``model`` (config) and ``vocab`` (JSON text)."""
    tensors, aliases = dedup_state(state)
    atomic_write_bytes(Path(path), pack(tensors, {**meta, "format": FORMAT, "aliases": aliases}))


def expand_aliases(tensors: dict[str, torch.Tensor], aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    return {**tensors, **{alias: tensors[target] for alias, target in aliases.items()}}
