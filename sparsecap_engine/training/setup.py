"""Resolve what a run needs before its first step: device, model config, data and vocabulary."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparsecap_engine.config import DataConfig, ModelConfig
from sparsecap_engine.data.captions import CaptionSet, load_records
from sparsecap_engine.data.synthetic import ensure_default_dataset
from sparsecap_engine.errors import UsageError
from sparsecap_engine.models.registry import DECODERS, preset
from sparsecap_engine.progress import Progress, no_progress
from sparsecap_engine.text.vocab import Vocab

#: the preset each model uses when none is named (small enough for 2 CPU cores)
DEFAULT_PRESETS: dict[str, str] = {"updown": "ud-small"}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but CUDA is not available (run `sparsecap doctor`)")
    if name != "cpu" and not name.startswith("cuda"):
        raise UsageError(f"unknown device {name!r}; choose from auto, cpu, cuda, cuda:N")
    return torch.device(name)


def resolve_model(cfg: ModelConfig) -> dict[str, Any]:
    """Preset (given or the model's default) with ``overrides`` applied on top."""
    if cfg.name not in DECODERS:
        raise UsageError(f"unknown model {cfg.name!r}; choose from {', '.join(sorted(DECODERS))}")
    name = cfg.preset or DEFAULT_PRESETS.get(cfg.name, "")
    base = preset(name) if name else {"name": cfg.name}
    if base["name"] != cfg.name:
        raise UsageError(f"preset {name!r} is for model {base['name']!r}, not {cfg.name!r}")
    return {**base, **cfg.overrides}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def dataset_path(cfg: DataConfig, progress: Progress = no_progress) -> Path:
    """The Karpathy JSON to use: ``cfg.dataset`` or the embedded synthetic dataset (generated once, then reused)."""
    return Path(cfg.dataset) if cfg.dataset else ensure_default_dataset(progress=progress)


@dataclass
class Splits:
    vocab: Vocab
    train: CaptionSet
    val: CaptionSet


def load_splits(cfg: DataConfig, vocab: Vocab | None = None, progress: Progress = no_progress) -> Splits:
    """Load train and val in memory; build the vocabulary from training captions unless one is given."""
    path = dataset_path(cfg, progress)
    records = load_records(path, Path(cfg.image_root) if cfg.image_root else None, cfg.use_raw)
    train = [r for r in records if r.split == "train"]
    val = [r for r in records if r.split == "val"]
    if vocab is None:
        vocab = Vocab.build((c for r in train for c in r.captions), cfg.min_word_count)
    return Splits(
        vocab,
        CaptionSet.build(train, vocab, cfg.max_len, cfg.image_size, progress),
        CaptionSet.build(val, vocab, cfg.max_len, cfg.image_size, progress),
    )
