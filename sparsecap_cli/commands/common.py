"""Option parsing shared by commands that build a run config (train, prune)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsecap_engine.config import RunConfig, load_toml
from sparsecap_engine.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sparsecap_cli.signals import StopSignals
    from sparsecap_engine.training.distributed import Dist


#: config keys that say how a run executes, not what it computes: allowed with ``--resume``
EXECUTION_KEYS = ("train.num_threads", "train.device", "train.dist_backend", "train.dist_timeout", "data.workers")


def alias(value: Any, old: Any, flag: str, old_flag: str) -> Any:
    """The value of ``flag``, or of its hidden old spelling ``old_flag`` (which keeps working); both given and
    different is a usage error."""
    if old is None:
        return value
    if value is not None and value != old:
        raise UsageError(f"{old_flag} is the old name of {flag}: give one of them")
    return old


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``--set section.key=value`` pairs; values parsed as JSON when they can be (numbers, booleans, lists)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise UsageError(f"--set expects section.key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def split_sets(items: list[str] | None, section: str) -> tuple[dict[str, Any], list[str]]:
    """``--set`` items of one ``section`` as ``{key: parsed value}``, and the other items as given."""
    ours = [item for item in items or [] if item.strip().startswith(f"{section}.")]
    rest = [item for item in items or [] if item not in ours]
    return {key.partition(".")[2]: value for key, value in parse_sets(ours).items()}, rest


def resume_overrides(name: str | None, config_file: Path | None, flags: dict[str, Any],
                     sets: list[str] | None, special: dict[str, str] | None = None) -> dict[str, Any]:
    """The only config a ``--resume`` may change: how to run it (``--device``, ``--set train.num_threads``), never
    what it computes. Anything else given (``--steps``, ``--lr``, ``--config``, other ``--set``) is refused, naming
    the flags, so a resumed run is never silently not what was asked for."""
    special = special or {}
    where = {k: v for k, v in parse_sets(sets).items() if k in EXECUTION_KEYS}
    if flags.get("train.device") is not None:
        where["train.device"] = flags["train.device"]
    extra = [special.get(k, "--" + k.split(".")[-1].replace("_", "-"))
             for k, v in flags.items() if v is not None and k != "train.device"]
    extra += (["--config"] if config_file else []) + [f"--set {k}" for k in parse_sets(sets) if k not in where]
    if not name or extra:
        raise UsageError(f"--resume continues the run --name as it was configured: give --name (and --runs-root, "
                         f"--device, --set train.num_threads=N) only{'; got ' + ', '.join(extra) if extra else ''}")
    return where


def given_keys(config_file: Path | None, flags: dict[str, Any], sets: list[str] | None) -> set[str]:
    """The dotted keys the user set: in the ``--config`` file, by a flag, or by ``--set``."""
    import tomllib

    keys = {k for k, v in flags.items() if v is not None} | set(parse_sets(sets))
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            data = {}  # load_toml reports it
        keys |= {f"{sec}.{k}" for sec, table in data.items() if isinstance(table, dict) for k in table}
    return keys


def build_config(config_file: Path | None, flags: dict[str, Any], sets: list[str] | None,
                 base: RunConfig | None = None, explicit: set[str] | None = None) -> RunConfig:
    """TOML file (optional; or ``base``) < flags < ``--set`` overrides. ``model.<hyper-parameter>`` sets go into
    overrides. Validation, logging and warm-up defaults then follow ``train.steps`` unless given
    (``config.fit_to_steps``; ``explicit``: the keys given besides ``config_file``, flags and ``--set``)."""
    cfg = base if base is not None else load_toml(config_file) if config_file else RunConfig()
    cfg = cfg.override(flags)
    model_sets = {}
    other = {}
    for key, value in parse_sets(sets).items():
        section, _, name = key.partition(".")
        if section == "model" and name not in ("name", "preset"):
            model_sets[name] = value
        else:
            other[key] = value
    cfg = cfg.override(other)
    cfg.model.overrides = {**cfg.model.overrides, **model_sets}
    from sparsecap_cli.render import err_console
    from sparsecap_engine.config import fit_to_steps

    for warning in fit_to_steps(cfg, given_keys(config_file, flags, sets) | (explicit or set())):
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)  # stdout stays --json's
    return cfg


def prune_config(config_file: Path | None, flags: dict[str, Any], sets: list[str] | None,
                 given: dict[str, Any]) -> RunConfig:
    """The config of a ``prune`` run; ``given`` holds only the pruning flags the user gave (``[prune]`` keys).

    Pruning options: ``PruneOptions`` defaults < the config file's ``[prune]`` < ``--set prune.KEY=VALUE`` < ``given``.
    The rest: ``--config FILE``; else, when ``prune.source`` (``--from``) is a run directory, that run's
    ``config.toml`` without its ``[prune]`` and ``[scst]`` sections and ``train.keep_steps`` (how that run was made is
    not how this one is: a supermask run can be pruned again with magnitude); else the defaults. Then the training
    flags and the other ``--set`` items, as for ``train``. Unknown ``[prune]`` keys are usage errors naming the nearest
    valid key.
    """
    from sparsecap_engine.recipes.prune import PruneOptions

    prune_sets, rest = split_sets(sets, "prune")
    base = load_toml(config_file) if config_file else None
    from_file = dict(base.prune) if base is not None else {}
    PruneOptions.check_keys(from_file, str(config_file))
    PruneOptions.check_keys(prune_sets, "--set")
    merged = {**from_file, **prune_sets, **given}
    source = Path(str(merged.get("source") or ""))
    if base is None and str(source) not in ("", ".") and (source / "config.toml").is_file():
        base = load_toml(source / "config.toml")  # data, optimiser and training settings of the run being pruned
        base.prune, base.scst = {}, {}
        if not any(item.strip().startswith("train.keep_steps=") for item in rest):
            base.train.keep_steps = []
    cfg = build_config(None, flags, rest, base=base, explicit=given_keys(config_file, {}, None))
    cfg.prune = PruneOptions.from_dict(merged).to_dict()
    return cfg


def default_run_name(cfg: RunConfig, suffix: str = "") -> str:
    return f"{cfg.model.preset or cfg.model.name}{suffix}-{time.strftime('%Y%m%d-%H%M%S')}"


def training_flags(
    *,
    model: str | None,
    preset: str | None,
    dataset: Path | None,
    image_root: Path | None,
    features: str | None,
    boxes: Path | None,
    steps: int | None,
    batch_size: int | None,
    lr: float | None,
    schedule: str | None,
    label_smoothing: float | None,
    grad_clip: float | None,
    val_every: int | None,
    device: str | None,
    amp: bool | None,
    seed: int | None,
) -> dict[str, Any]:
    """The training flags ``train`` and ``prune`` share, as dotted config keys (``None`` = not given). ``--preset``
    alone names its model too (``--preset ort-paper`` is an ORT)."""
    if preset is not None and model is None:
        from sparsecap_engine.models.registry import PRESETS

        model = PRESETS.get(preset, {}).get("name")  # an unknown preset is reported by the config's checks
    return {
        "model.name": model,
        "model.preset": preset,
        "data.dataset": str(dataset) if dataset else None,
        "data.image_root": str(image_root) if image_root else None,
        "data.features": features,
        "data.boxes": str(boxes) if boxes else None,
        "train.steps": steps,
        "train.batch_size": batch_size,
        "optim.lr": lr,
        "optim.schedule": schedule,
        "optim.label_smoothing": label_smoothing,
        "optim.grad_clip": grad_clip,
        "train.val_every": val_every,
        "train.device": device,
        "train.amp": amp,
        "train.seed": seed,
    }


def finite(obj: Any) -> Any:
    """NaN/inf (a diverged loss) → null, so the output is strict JSON."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def print_json(payload: dict[str, Any]) -> None:
    """A command's ``--json`` summary on stdout (NaN and infinities as null)."""
    print(json.dumps(finite(payload)), flush=True)


def raise_for_status(status: str, message: str, signals: StopSignals | None = None) -> None:
    """The exit a run's end status calls for: diverged → one red line, exit 1; interrupted → 130 / 143."""
    from sparsecap_engine.errors import DivergedError, Interrupted

    if status == "diverged":
        raise DivergedError(message)
    if status == "interrupted":
        code = signals.exit_code if signals is not None and signals.exit_code else 130
        raise Interrupted(message, code)


def join_job(cfg: RunConfig) -> Dist:
    """Join the ``torchrun`` job this process is part of (nothing to join alone): ranks other than 0 print nothing
    but their errors, and write nothing into the run directory."""
    from sparsecap_cli.render import console
    from sparsecap_engine.training.distributed import init_from_env

    dist = init_from_env(cfg.train.device, cfg.train.dist_backend, cfg.train.dist_timeout)
    dist.check_batch(cfg.train.batch_size)  # on every rank, before rank 0 creates the run
    if not dist.is_main:
        console.quiet = True
    return dist


class DetachedProgress:
    """The progress of a job under the live monitor: silent while the monitor shows it, plain lines on stderr (every
    ``$SPARSECAP_PROGRESS_EVERY`` s) once the user detaches, so the terminal does not go quiet for the rest."""

    def __init__(self) -> None:
        self.target: Callable[..., Any] | None = None

    def start(self) -> None:
        from sparsecap_cli.render import log_progress

        self.target = log_progress()

    def __call__(self, task: str, done: int, total: int | None, **info: Any) -> None:
        if self.target is not None:
            self.target(task, done, total, **info)


def run_stoppable(job: Callable[..., Any], run_path: Path, tui: bool, quiet: bool) -> tuple[Any, StopSignals]:
    """Run ``job(stop=…, progress=…)`` (a training or pruning run) with Ctrl-C/SIGTERM handled by
    :class:`StopSignals`: under the live monitor with ``tui``, else with a progress bar. Returns its result and the
    signals (for the exit code)."""
    from sparsecap_cli.render import console, progress_bar
    from sparsecap_cli.signals import StopSignals
    from sparsecap_engine.training.distributed import current

    if not current().is_main:  # rank 0 shows the progress and the monitor
        tui, quiet = False, True
    with StopSignals(console.print) as signals:
        if tui:
            from sparsecap_cli.tui.attach import run_with_monitor

            # the signal's reason first: a signal also sets the monitor's own flag (``on_first``), which alone
            # would end the run as "stopped" instead of "interrupted"; once detached, plain progress lines
            progress = DetachedProgress()
            return run_with_monitor(lambda stop: job(stop=lambda: signals() or stop(), progress=progress), run_path,
                                    signals=signals, on_detach=progress.start), signals
        with progress_bar(quiet) as progress:
            return job(stop=signals, progress=progress), signals
