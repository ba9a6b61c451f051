"""Which checkpoint a command reads (:func:`checkpoint_file`: a file, or a run directory and one of its checkpoints)
and what ``--from`` points at (:func:`open_source`, for ``prune`` and ``train --scst``): its weights, metadata, exact
model config, tokenizer and masks. Every command resolves RUN | FILE here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from sparsecap_engine.checkpoint.masks_file import load_masks, masks_path
from sparsecap_engine.checkpoint.model_io import model_config_of, read_state
from sparsecap_engine.config import ModelConfig
from sparsecap_engine.errors import CheckpointError, RunError
from sparsecap_engine.runs import RunDir
from sparsecap_engine.text.tokenizer import tokenizer_from_json


@dataclass
class Source:
    """A trained model to start from: the run holding it (if any), the checkpoint, its weights and metadata."""

    run: RunDir | None
    checkpoint: Path
    state: dict[str, Tensor]
    meta: dict[str, Any]

    @property
    def vocab(self):
        """The source's tokenizer (word vocabulary or radix)."""
        return tokenizer_from_json(self.meta["vocab"], str(self.checkpoint))

    def model_config(self) -> ModelConfig:
        """The source's exact model, as a preset-free model config."""
        model = model_config_of(self.meta)
        return ModelConfig(name=model.pop("name"), preset="", overrides=model)

    def masks(self) -> dict[str, Tensor] | None:
        """The hard masks of a pruned checkpoint (its ``.masks`` sibling), None for a dense one."""
        side = masks_path(self.checkpoint)
        return load_masks(side)[0] if side.is_file() else None


def checkpoint_file(path: str | Path, which: str = "auto") -> Path:
    """The checkpoint a command reads: a file as given, or a run directory's ``which`` checkpoint — ``auto``: the
    pruned one when the run has it, else best; ``best`` (falls back to last), ``last``, ``pruned``, ``step-K``."""
    path = Path(path)
    if not path.is_dir():
        return path
    run = RunDir.open(path)
    if which == "auto":
        pruned = run.checkpoints / "pruned.safetensors"
        return pruned if pruned.is_file() else run.checkpoint("best")
    return run.checkpoint(which)


def open_source(path: str | Path, which: str = "best") -> Source:
    """``--from``: a run directory (its ``which`` checkpoint; best falls back to last) or a checkpoint file (inside
    a run's ``checkpoints/`` folder, that run is the source's run)."""
    path = Path(path)
    if path.is_dir():
        run: RunDir | None = RunDir.open(path)
        ckpt = checkpoint_file(path, which)
    elif path.is_file():
        ckpt = path
        parent = path.parent.parent
        run = RunDir(parent) if path.parent.name == "checkpoints" and (parent / "config.toml").is_file() else None
    else:
        raise RunError(f"--from {path}: no such run directory or checkpoint")
    state, meta = read_state(ckpt)
    if not isinstance(meta.get("model"), dict) or "vocab" not in meta:
        raise CheckpointError(f"{ckpt}: metadata lacks the model config or vocabulary")
    return Source(run, ckpt, state, meta)
