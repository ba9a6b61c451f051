"""The masks sibling of a pruned checkpoint: ``<name>.masks.safetensors`` (format ``sparsecap-masks-1``), one bool
tensor per pruned weight, so ``fixed`` fine-tuning, lottery rewinding and ``inspect`` see the exact masks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparsecap_engine.atomic import atomic_write_bytes
from sparsecap_engine.checkpoint.dense import pack, read_file
from sparsecap_engine.errors import CheckpointError

MASKS_FORMAT = "sparsecap-masks-1"


def masks_path(checkpoint: Path) -> Path:
    """``…/best.safetensors`` → ``…/best.masks.safetensors``."""
    checkpoint = Path(checkpoint)
    stem = checkpoint.name.removesuffix(".safetensors")
    return checkpoint.with_name(f"{stem}.masks.safetensors")


def save_masks(path: Path, masks: dict[str, Tensor], **meta: Any) -> None:
    tensors = {name: m.detach().to("cpu", torch.bool).contiguous() for name, m in masks.items()}
    atomic_write_bytes(Path(path), pack(tensors, {**meta, "format": MASKS_FORMAT}))


def load_masks(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors, meta = read_file(path)
    if meta["format"] != MASKS_FORMAT:
        raise CheckpointError(f"{path}: format {meta['format']!r} is not {MASKS_FORMAT!r}")
    odd = [k for k, v in tensors.items() if v.dtype != torch.bool]
    if odd:  # a float "mask" of 3.5s would silently keep every weight
        raise CheckpointError(f"{path}: mask {odd[0]!r} is {tensors[odd[0]].dtype}, not boolean")
    return dict(tensors), meta
