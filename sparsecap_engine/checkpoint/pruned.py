"""Checkpoints of pruned runs.

``<name>.safetensors`` is a plain dense checkpoint with ``w ⊙ m`` baked in (``load_model`` rebuilds the plain model
class from it); its metadata carries a ``sparsity`` summary. The hard 0/1 masks go to the sibling file
``<name>.masks.safetensors`` (``checkpoint/masks_file.py``) so ``fixed`` fine-tuning and lottery rewinding restore
the exact masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from sparsecap_engine.checkpoint.masks_file import load_masks, masks_path, save_masks
from sparsecap_engine.checkpoint.model_io import read_state, save_model
from sparsecap_engine.errors import CheckpointError
from sparsecap_engine.pruning.masks import baked_state_dict
from sparsecap_engine.pruning.scope import prunable
from sparsecap_engine.text.vocab import Vocab


def save_pruned(
    path: Path, model: nn.Module, vocab: Vocab, masks: dict[str, Tensor], sparsity: dict[str, Any], **extra: Any
) -> None:
    """Baked dense checkpoint (loads into the plain model class) + its masks sibling."""
    save_model(path, model, vocab, state=baked_state_dict(model), sparsity=sparsity, **extra)
    save_masks(masks_path(path), masks, sparsity=sparsity)


def read_masks_for(checkpoint: Path, model: nn.Module | None = None) -> dict[str, Tensor]:
    """Masks of a checkpoint: its ``.masks`` sibling, else the non-zero pattern of its prunable weights."""
    side = masks_path(checkpoint)
    if side.is_file():
        return load_masks(side)[0]
    if model is None:
        raise CheckpointError(f"{checkpoint}: no masks file {side.name} next to it")
    state, _ = read_state(checkpoint)
    return {name: state[name] != 0 for name in prunable(model) if name in state}


__all__ = ["load_masks", "masks_path", "read_masks_for", "save_masks", "save_pruned"]
