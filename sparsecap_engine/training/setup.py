"""Resolve what a run needs before its first step: device, model config, data and vocabulary."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparsecap_engine.config import DataConfig, ModelConfig, RunConfig
from sparsecap_engine.data.captions import CaptionSet, load_records
from sparsecap_engine.data.features import RegionFeatures
from sparsecap_engine.data.images import image_size_problem
from sparsecap_engine.data.synthetic import ensure_default_dataset
from sparsecap_engine.errors import DataError, UsageError
from sparsecap_engine.models.presets import DEFAULT_PRESET
from sparsecap_engine.models.registry import MODELS, model_problem, preset
from sparsecap_engine.progress import Progress, no_progress
from sparsecap_engine.text.tokenizer import build_tokenizer
from sparsecap_engine.text.vocab import Vocab

#: the preset each model uses when none is named (small enough for 2 CPU cores)


def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` as a torch device; anything else (``tpu``, ``meta``, ``""``, a
    CUDA index past the last GPU) is a one-line ``UsageError``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:\d{1,4})?", name):
        raise UsageError(f"unknown device {name!r}; choose from auto, cpu, cuda, cuda:N")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but CUDA is not available (run `sparsecap doctor`)")
        index, count = int(name.partition(":")[2] or 0), torch.cuda.device_count()
        if index >= count:
            raise UsageError(f"--device {name}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
    return torch.device(name)


def resolve_model(cfg: ModelConfig) -> dict[str, Any]:
    """Preset (given or the model's default) with ``overrides`` applied on top."""
    if cfg.name not in MODELS:
        raise UsageError(f"unknown model {cfg.name!r}; choose from {', '.join(sorted(MODELS))}")
    name = cfg.preset or DEFAULT_PRESET.get(cfg.name, "")
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
    #: training images left out because they have no caption (counted in ``run_start``)
    skipped_train: int = 0


def resolve_tokenizer(cfg: DataConfig, model: dict[str, Any] | None = None) -> tuple[str, int]:
    """(kind, radix base): ``data.tokenizer``/``data.radix_base``, else the model preset's, else word / 768."""
    model = model or {}
    kind = cfg.tokenizer or str(model.get("tokenizer", "word"))
    base = cfg.radix_base or int(model.get("radix_base", 768))
    return kind, base


def open_features(cfg: DataConfig, dataset: Path, progress: Progress = no_progress) -> RegionFeatures | None:
    """The run's region features (``data.features``), or None to read raw images."""
    if not cfg.features:
        return None
    if cfg.features == "auto":
        from sparsecap_engine.data.synthetic_features import FEATURES_FILE, ensure_synthetic_features

        path = Path(dataset).parent / FEATURES_FILE
        if not cfg.dataset:  # the embedded dataset: written on first use (an older cache: again)
            path = ensure_synthetic_features(dataset, progress)
        if not path.is_file():
            raise DataError(f"--features auto: no {FEATURES_FILE} beside {dataset}")
    else:
        path = Path(cfg.features)
    return RegionFeatures.open(path, Path(cfg.boxes) if cfg.boxes else None, cfg.box_format)


def fit_encoder(model: dict[str, Any], splits: Splits) -> dict[str, Any]:
    """Make the model's encoder match the data: region features → ``regions`` of their width; raw images → the
    preset's pixel encoder, or ``grid-cnn`` for a preset written for region features (e.g. ``ort-paper``)."""
    feats = splits.train.features
    if feats is not None:
        if model.get("name") == "ort" and not feats.has_boxes:
            raise DataError(f"the ORT model needs region boxes: {feats.feats.path} has none (give --boxes)")
        return {**model, "encoder": "regions", "encoder_args": {"feat_dim": feats.dim}}
    if model.get("encoder", "grid-cnn") == "regions":
        return {**model, "encoder": "grid-cnn", "encoder_args": {}}
    return model


def load_splits(
    cfg: DataConfig,
    vocab: Vocab | None = None,
    progress: Progress = no_progress,
    model: dict[str, Any] | None = None,
) -> Splits:
    """Load train and val; build the tokenizer (``word`` or ``radix``, see :func:`resolve_tokenizer`) from training
    captions unless one is given. Pixels are held in memory; region features are read per batch."""
    path = dataset_path(cfg, progress)
    records = load_records(path, Path(cfg.image_root) if cfg.image_root else None, cfg.use_raw)
    train = [r for r in records if r.split == "train" and r.captions]  # nothing to learn from an uncaptioned image
    skipped = sum(1 for r in records if r.split == "train" and not r.captions)
    if not train:
        raise DataError(f"{path}: no image of the 'train' split has a caption")
    val = [r for r in records if r.split == "val"]
    if vocab is None:
        kind, base = resolve_tokenizer(cfg, model)
        vocab = build_tokenizer(kind, (c for r in train for c in r.captions), cfg.min_word_count, base)
    features = open_features(cfg, path, progress)
    return Splits(
        vocab,
        CaptionSet.build(train, vocab, cfg.max_len, cfg.image_size, progress, features),
        CaptionSet.build(val, vocab, cfg.max_len, cfg.image_size, progress, features),
        skipped_train=skipped,
    )


def check_config(config: RunConfig) -> None:
    """Fail fast (before a run directory or dataset is touched) on values that cannot work."""
    from sparsecap_engine.decoding.api import MAX_LEN
    from sparsecap_engine.training.schedules import SCHEDULES

    resolve_model(config.model)
    resolve_device(config.train.device)
    if config.optim.schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {config.optim.schedule!r}; choose from {', '.join(SCHEDULES)}")
    if config.optim.grad_clip_mode not in ("norm", "value"):
        raise UsageError(f"unknown grad_clip_mode {config.optim.grad_clip_mode!r}; choose from norm, value")
    for name in ("steps", "batch_size", "val_every", "log_every", "seq_per_img"):
        section = config.data if name == "seq_per_img" else config.train
        if getattr(section, name) < 1:
            raise UsageError(f"{name} must be at least 1")
    if config.data.max_len < 3:
        raise UsageError("data.max_len must be at least 3")
    oc = config.optim
    for name, value, ok, want in (
        ("optim.lr", oc.lr, oc.lr > 0, "> 0"),
        ("optim.lr_min", oc.lr_min, oc.lr_min >= 0, "≥ 0"),
        ("optim.label_smoothing", oc.label_smoothing, 0 <= oc.label_smoothing < 1, "in [0, 1)"),
        ("optim.grad_clip", oc.grad_clip, oc.grad_clip >= 0, "≥ 0 (0 = off)"),
        ("optim.weight_decay", oc.weight_decay, oc.weight_decay >= 0, "≥ 0"),
        ("optim.warmup", oc.warmup, oc.warmup >= 0, "≥ 0"),
        ("optim.eps", oc.eps, oc.eps > 0, "> 0"),
    ):
        if not ok:
            raise UsageError(f"{name} must be {want}, got {value}")
    if len(oc.betas) != 2 or not all(0 <= b < 1 for b in oc.betas):
        raise UsageError(f"optim.betas must be two numbers in [0, 1), got {oc.betas}")
    model = resolve_model(config.model)
    for key, value in model.items():
        sizes = ("_size", "d_model", "dim_feedforward", "num_layers", "num_heads")
        if isinstance(value, int) and not isinstance(value, bool) and key.endswith(sizes) and value < 1:
            raise UsageError(f"model.{key} must be at least 1, got {value}")
        if isinstance(value, float) and "drop" in key and not 0 <= value < 1:
            raise UsageError(f"model.{key} must be in [0, 1), got {value}")
    problem = model_problem(model)  # built on the meta device: bad sizes, types and options, absurd parameter counts
    if problem:
        raise UsageError(f"model config {problem}")
    problem = image_size_problem(config.data.image_size)
    if problem:
        raise UsageError(f"data.image_size {problem}")
    if config.data.max_len > MAX_LEN:
        raise UsageError(f"data.max_len must be at most {MAX_LEN}, got {config.data.max_len}")
    tc = config.train
    for name, value, ok, want in (
        ("data.min_word_count", config.data.min_word_count, config.data.min_word_count >= 0, "≥ 0"),
        ("data.radix_base", config.data.radix_base, config.data.radix_base == 0 or config.data.radix_base >= 2,
         "0 (the preset's) or ≥ 2"),
        ("train.num_threads", tc.num_threads, 0 <= tc.num_threads <= 1024, "between 0 (torch's default) and 1024"),
        ("train.val_images", tc.val_images, tc.val_images >= 1, "≥ 1"),
        ("train.samples", tc.samples, tc.samples >= 0, "≥ 0"),
        ("train.keep_steps", tc.keep_steps, all(isinstance(k, int) and 1 <= k <= tc.steps for k in tc.keep_steps),
         f"steps between 1 and train.steps ({tc.steps})"),
    ):
        if not ok:
            raise UsageError(f"{name} must be {want}, got {value}")
    if config.scst and not config.scst.get("source"):
        raise UsageError("[scst] settings start an SCST stage: give --scst --from RUN")
    kind, base = resolve_tokenizer(config.data, model)
    if kind not in ("word", "radix"):
        raise UsageError(f"unknown tokenizer {kind!r}; choose from word, radix")
    if kind == "radix" and base < 2:
        raise UsageError(f"radix base must be at least 2 (got {base})")
    data = config.data
    for what, value in (("--dataset", data.dataset), ("--image-root", data.image_root),
                        ("--features", "" if data.features == "auto" else data.features), ("--boxes", data.boxes)):
        if value and not Path(value).exists():  # a typo fails here, before a run directory is made for it
            raise DataError(f"{what} {value}: no such file or folder")
    if data.dataset and not Path(data.dataset).is_file():
        raise DataError(f"--dataset {data.dataset}: not a file (the Karpathy JSON)")
    if config.data.box_format not in ("auto", "relative", "absolute"):
        raise UsageError(f"unknown box format {config.data.box_format!r}; choose from auto, relative, absolute")
