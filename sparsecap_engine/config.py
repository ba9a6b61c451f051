"""Run configuration as plain data: dataclass sections, read from TOML, overridden by flags, saved with the run."""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from sparsecap_engine.errors import UsageError


@dataclass
class DataConfig:
    """Where the captions and images/features come from. ``dataset`` empty → the embedded synthetic dataset."""

    dataset: str = ""
    image_root: str = ""
    use_raw: bool = False
    image_size: int = 64
    min_word_count: int = 2
    max_len: int = 18
    seq_per_img: int = 5
    #: ``word`` | ``radix``; empty → the model preset's tokenizer, else ``word``
    tokenizer: str = ""
    #: radix base b (output vocabulary b + 3); 0 → the preset's, else 768
    radix_base: int = 0
    #: region features: a folder of ``<id>.npy``, an HDF5 file, or ``auto`` (``features.h5`` beside the dataset JSON);
    #: empty → raw images through the model's pixel encoder
    features: str = ""
    #: boxes for the features (folder or HDF5); empty → the features file's ``boxes`` group if it has one
    boxes: str = ""
    #: ``auto`` | ``relative`` | ``absolute`` (pixels, divided by the image's width and height)
    box_format: str = "auto"
    #: DataLoader worker processes reading the region features ahead of the training steps; -1 = auto (up to 4 per
    #: process on CUDA with region features, none otherwise: images are held in memory, and a CPU run's cores train)
    workers: int = -1


@dataclass
class ModelConfig:
    """A preset name and/or explicit overrides of its hyper-parameters."""

    name: str = "updown"
    preset: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Adam with a schedule; gradient clipping by ``grad_clip_mode`` (``norm`` or ``value``, the reference's)."""

    lr: float = 1e-3
    lr_min: float = 1e-5
    eps: float = 1e-8
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup: int = 200
    noam_factor: float = 1.0
    step_every: int = 1000
    step_rate: float = 0.8
    grad_clip: float = 1.0
    grad_clip_mode: str = "norm"
    label_smoothing: float = 0.0


@dataclass
class TrainConfig:
    """The recipe: steps, batch, validation cadence, device, seed."""

    steps: int = 1500
    batch_size: int = 32
    val_every: int = 500
    val_images: int = 250
    log_every: int = 25
    samples: int = 4
    device: str = "auto"
    amp: bool = True
    seed: int = 8888
    num_threads: int = 0
    #: also save ``checkpoints/step-<k>.safetensors`` after these steps (lottery-ticket late rewinding)
    keep_steps: list[int] = field(default_factory=list)
    #: multi-process runs (torchrun): ``auto`` (nccl on CUDA, gloo on the CPU) | ``gloo`` | ``nccl``
    dist_backend: str = "auto"
    #: multi-process runs: seconds any collective may wait for the other ranks before the job fails
    dist_timeout: float = 600.0


@dataclass
class RunConfig:
    """Everything needed to rebuild a run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: dict[str, Any] = field(default_factory=dict)
    #: self-critical fine-tuning (``training/scst.py``); empty → XE training
    scst: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(sections)
        if unknown:
            first = sorted(unknown)[0]
            raise UsageError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}{nearest(first, sections)}")
        cfg = cls()
        for name, value in data.items():
            if not isinstance(value, dict):
                raise UsageError(f"{source}: [{name}] must be a table, got {value!r}")
            if name in ("prune", "scst"):
                setattr(cfg, name, dict(value))
                continue
            current = getattr(cfg, name)
            setattr(cfg, name, _merge(current, value, f"{source}: [{name}]"))
        return cfg

    def override(self, dotted: dict[str, Any]) -> RunConfig:
        """Apply ``{"optim.lr": 1e-3, ...}`` overrides (from command-line flags); ``None`` values are skipped."""
        data = self.to_dict()
        for key, value in dotted.items():
            if value is None:
                continue
            section, _, name = key.partition(".")
            if section not in data:
                raise UsageError(f"unknown config key {key!r}{nearest(section, data)}")
            data[section][name] = value
        return RunConfig.from_dict(data)


def nearest(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest valid name, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _typed(value: Any, default: Any, key: str) -> Any:
    """``value`` checked against the type of the field's default (ints accepted for floats, as TOML writes them)."""
    def bad(kind: str) -> UsageError:
        return UsageError(f"config: {key} must be {kind}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        if abs(value) > 2**62:
            raise bad("an integer of a sensible size")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
        if not math.isfinite(value):
            raise bad("a finite number")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
    elif isinstance(default, list):
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        value = list(value)
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise bad("a table")
    return value


def _merge(current: Any, values: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(current)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UsageError(f"{where} unknown key(s) {', '.join(unknown)}{nearest(unknown[0], names)}")
    section = where.rsplit("[", 1)[-1].rstrip("]")
    typed = {k: _typed(v, getattr(current, k), f"{section}.{k}") for k, v in values.items()}
    return dataclasses.replace(current, **typed)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is a one-line usage error."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text (a TOML file must be)") from None


def load_toml(path: Path) -> RunConfig:
    return RunConfig.from_dict(read_toml(path), str(path))


def _drop_none(value: Any) -> Any:
    """TOML has no null: a ``None`` is left out (reading the file back gives the field's default, ``None``)."""
    if isinstance(value, dict):
        return {str(k): _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value if v is not None]
    return value


def to_toml(data: dict[str, Any]) -> str:
    """A dict of sections as TOML, written by ``tomli-w`` (any string — emoji, quotes, newlines — reads back)."""
    return tomli_w.dumps(_drop_none(data))


#: settings whose defaults suit the default run length and follow ``train.steps`` when not given (see
#: :func:`fit_to_steps`)
STEP_SCALED = ("train.val_every", "train.log_every", "optim.warmup")


def fit_to_steps(cfg: RunConfig, explicit: set[str]) -> list[str]:
    """Make the defaults of a short run sensible, in place: validation (and its sample captions) at least 4 times,
    at least 20 logged points for the curves, warm-up at most a tenth of the run — for each ``STEP_SCALED`` key the
    user did not give (``explicit``); a given value that cannot work as meant gets a warning (returned)."""
    steps, tc, oc = cfg.train.steps, cfg.train, cfg.optim
    warnings: list[str] = []
    if not isinstance(steps, int) or steps < 1:
        return warnings  # the config's checks refuse it
    if "train.val_every" not in explicit and tc.val_every > steps // 2:
        tc.val_every = max(1, steps // 4)
    elif tc.val_every > steps:
        warnings.append(f"train.val_every {tc.val_every} > train.steps {steps}: validates only at the end")
    if "train.log_every" not in explicit and steps // max(1, tc.log_every) < 20:
        tc.log_every = max(1, steps // 20)
    if "optim.warmup" not in explicit and oc.warmup > steps // 5:
        oc.warmup = steps // 10
    elif oc.warmup >= steps and oc.schedule in ("cosine", "noam"):
        warnings.append(f"optim.warmup {oc.warmup} ≥ train.steps {steps}: the learning rate never reaches its peak")
    return warnings
