"""The whole pruning flow behind ``sparsecap prune``: resolve ``--from``, build the method, train with it (one run, or
one per lottery round), then write the pruned checkpoint, the per-layer sparsity table (CSV, JSON) and chart (PNG).

- train-with-pruning: ``supermask``, ``gradual``, ``snip`` (from scratch, or from ``--from`` weights);
- prune-then-fine-tune: ``magnitude`` (``--from`` a trained dense run), ``fixed`` (``--from`` a pruned run);
- ``lottery``: masks by one-shot magnitude of ``--from``'s trained weights (or ``--from``'s own masks when it is a
  pruned run, e.g. gradual: "lottery ticket (gradual)"), weights rewound to ``--from``'s ``init`` checkpoint or to its
  ``step-<k>`` checkpoint (late rewinding), retrained with fixed masks; ``rounds`` N > 1 prunes iteratively,
  ``s_r = 1 − (1 − s)^(r/N)`` of the remaining weights each round, rewinding every time (rounds 1..N−1 live in
  ``<run>/rounds/round-<r>/``, the last round is the run itself).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sparsecap_engine.checkpoint.model_io import load_model, read_state, save_model
from sparsecap_engine.checkpoint.pruned import masks_path, read_masks_for, save_masks
from sparsecap_engine.checkpoint.source import Source, open_source
from sparsecap_engine.config import RunConfig
from sparsecap_engine.errors import CheckpointError, DivergedError, UsageError
from sparsecap_engine.humanize import percent
from sparsecap_engine.models.registry import build_model
from sparsecap_engine.progress import Progress, no_progress
from sparsecap_engine.pruning.criteria import CRITERIA, SNIP_SALIENCY, select
from sparsecap_engine.pruning.methods import PRUNE_METHODS, PruneMethod, SupermaskMethod, build_method
from sparsecap_engine.pruning.report import sparsity_report, summary, write_report
from sparsecap_engine.pruning.scope import in_scope, prunable
from sparsecap_engine.runs import RunDir
from sparsecap_engine.training.distributed import current

#: methods that prune a trained model and so need ``--from``
NEEDS_SOURCE = ("magnitude", "lottery", "fixed")


@dataclass
class PruneOptions:
    """The ``[prune]`` section of a run's config (``-1`` = automatic for the gradual schedule)."""

    method: str = "supermask"
    sparsity: float = 0.95
    criterion: str = "blind"
    source: str = ""
    source_checkpoint: str = "best"
    freeze: list[str] = field(default_factory=list)
    min_density: float = 0.0
    recipe: str = "robust"
    mask_init: float = 5.0
    mask_lr: float = -1.0
    mask_eps: float = -1.0
    sparsity_weight: float = -1.0
    ramp_end: float = 0.6
    harden_at: float = 0.8
    sharpen: float = 1.0
    sampling: str = ""
    layer_share: float = 0.0
    ramp_begin: float = 0.2
    start: int = -1
    end: int = -1
    every: int = -1
    initial_sparsity: float = 0.0
    rounds: int = 1
    rewind_step: int = 0
    snip_batches: int = 1
    snip_saliency: str = "abs"

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def check_keys(cls, keys: Iterable[str], where: str = "prune options") -> None:
        """A one-line usage error for the first unknown key, naming the nearest valid one (no ``[…]`` in messages:
        the CLI prints them with rich markup)."""
        names = cls.keys()
        for key in keys:
            if key not in names:
                near = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean prune.{near[0]}?" if near else f"; valid keys: {', '.join(names)}"
                raise UsageError(f"{where}: unknown key prune.{key}{hint}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "prune options") -> PruneOptions:
        """Checked options from a ``[prune]`` table (missing keys take the defaults above)."""
        cls.check_keys(data, where)
        defaults = cls()
        values: dict[str, Any] = {}
        for key, value in data.items():
            values[key] = _coerce(key, value, getattr(defaults, key), where)
        opts = cls(**values)
        opts.check()
        return opts

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        if self.method not in PRUNE_METHODS:
            raise UsageError(f"unknown pruning method {self.method!r}; choose from {', '.join(sorted(PRUNE_METHODS))}")
        if self.criterion not in CRITERIA:
            raise UsageError(f"unknown criterion {self.criterion!r}; choose from {', '.join(CRITERIA)}")
        if not 0.0 <= self.sparsity < 1.0:
            raise UsageError(f"--sparsity must be in [0, 1), got {self.sparsity}")
        if self.recipe not in SupermaskMethod.RECIPES:
            raise UsageError(f"unknown --recipe {self.recipe!r}; choose from {', '.join(SupermaskMethod.RECIPES)}")
        if self.snip_saliency not in SNIP_SALIENCY:
            raise UsageError(f"unknown prune.snip_saliency {self.snip_saliency!r}; "
                             f"choose from {', '.join(SNIP_SALIENCY)}")
        if not 0.0 <= self.ramp_begin < self.ramp_end <= self.harden_at <= 1.0:
            raise UsageError(f"supermask needs 0 ≤ --ramp-begin < --ramp-end ≤ --harden-at ≤ 1, got "
                             f"{self.ramp_begin}, {self.ramp_end} and {self.harden_at}")
        if self.method in NEEDS_SOURCE and not self.source:
            raise UsageError(f"--method {self.method} prunes a trained model: give --from RUN")
        if not 1 <= self.rounds <= 100:  # each round is a whole training run
            raise UsageError(f"--rounds must be between 1 and 100, got {self.rounds}")
        if self.rounds > 1 and self.method != "lottery":
            raise UsageError("--rounds applies to --method lottery only")
        if self.rewind_step and self.method != "lottery":
            raise UsageError("--rewind-step applies to --method lottery only")
        if self.rewind_step < 0:
            raise UsageError("--rewind-step must be ≥ 0")


def _coerce(key: str, value: Any, default: Any, where: str) -> Any:
    """A ``[prune]`` value of the default's type (``--set`` values are JSON or strings; TOML ints for floats)."""
    if isinstance(default, list):
        if isinstance(value, str):  # --set prune.freeze=encoder,embed
            return [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    elif isinstance(default, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    kind = {list: "a list of names", str: "a string", float: "a number", int: "an integer"}[type(default)]
    raise UsageError(f"{where}: prune.{key} must be {kind}, got {value!r}")


def xe_loss_fn(config: RunConfig, splits) -> Callable[[nn.Module, int], Tensor]:
    """``loss(model, i)``: caption XE of the i-th saliency batch (random training images, seeded)."""
    from sparsecap_engine.training.objectives import xe_batch_loss

    per_img, size = config.data.seq_per_img, config.train.batch_size

    def loss(model: nn.Module, i: int) -> Tensor:
        gen = torch.Generator().manual_seed(config.train.seed * 7907 + i)
        index = torch.randperm(len(splits.train), generator=gen)[:size].tolist()
        return xe_batch_loss(model, splits.train, index, gen, per_img, splits.vocab.pad_id,
                             config.optim.label_smoothing)[0]

    return loss


def make_method(opts: PruneOptions, total_steps: int, masks: dict[str, Tensor] | None = None,
                sparsity: float | None = None) -> PruneMethod:
    auto = lambda v: None if v < 0 else v  # noqa: E731
    common = {"sparsity": opts.sparsity if sparsity is None else sparsity, "freeze": opts.freeze,
              "min_density": opts.min_density, "total_steps": total_steps, "criterion": opts.criterion}
    extra: dict[str, Any] = {
        "supermask": {"recipe": opts.recipe, "mask_init": opts.mask_init, "mask_lr": opts.mask_lr,
                      "mask_eps": opts.mask_eps, "sparsity_weight": opts.sparsity_weight, "ramp_end": opts.ramp_end,
                      "harden_at": opts.harden_at, "sharpen": opts.sharpen, "sampling": opts.sampling,
                      "layer_share": opts.layer_share, "ramp_begin": opts.ramp_begin},
        "gradual": {"start": auto(opts.start), "end": auto(opts.end), "every": auto(opts.every),
                    "initial_sparsity": opts.initial_sparsity},
        "snip": {"snip_batches": opts.snip_batches, "snip_saliency": opts.snip_saliency},
        "fixed": {"masks": masks},
        "lottery": {"masks": masks},
    }.get(opts.method, {})
    return build_method(opts.method, **common, **extra)


def mask_sparsity(masks: dict[str, Tensor]) -> float:
    numel = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(torch.count_nonzero(m)) for m in masks.values()) / max(1, numel)


@dataclass
class PruneResult:
    """``status``: the run's ``run_end`` status (``target-missed`` when it completed without reaching the target);
    ``reached``: the end-of-run verdict (``recipes/train.py`` ``target_check``); ``message``: that verdict in one
    line; ``outputs``: ``checkpoint`` and ``masks`` only when the target was reached, ``csv``/``json``/``png``
    always."""

    run: RunDir
    status: str
    target: float
    sparsity: float
    reached: bool
    message: str
    best_step: int | None
    best_cider: float | None
    metrics: dict[str, float]
    report: dict[str, Any]
    outputs: dict[str, Path]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def finish(run: RunDir, target: float, method: str, reached: bool) -> tuple[dict[str, Any], dict[str, Path], str]:
    """The sparsity outputs (``sparsity.csv``/``.json``, ``plots/sparsity.png``) and, only when the target was
    reached, ``checkpoints/pruned.safetensors`` (+ masks) from ``best``.

    A missed target writes no pruned checkpoint (and removes a stale one an ``--overwrite`` left behind): the
    report is of ``last`` (the masks the run ended with) with ``"reached": false``; ``last`` and ``best`` (if any)
    stay for inspection."""
    which = "best" if reached else "last"
    src = run.checkpoints / f"{which}.safetensors"
    model, vocab, meta = load_model(src)
    masks = read_masks_for(src, model)
    rep = sparsity_report(model, masks)
    pruned = run.checkpoints / "pruned.safetensors"
    outputs: dict[str, Path] = {}
    if reached:
        info = summary(rep, target, method)
        keep = {k: meta[k] for k in ("step", "image_size", "metrics", "regions") if k in meta}
        save_model(pruned, model, vocab, sparsity=info, pruned_from=which, **keep)
        save_masks(masks_path(pruned), masks, sparsity=info)
        outputs = {"checkpoint": pruned, "masks": masks_path(pruned)}
    else:
        for stale in (pruned, masks_path(pruned)):
            stale.unlink(missing_ok=True)
    extra = {"method": method, "target": target, "reached": reached,
             "checkpoint": str(pruned) if reached else None, "from": which, "step": meta.get("step")}
    paths = write_report(rep, run.path, run.plots, extra, target)
    return rep, {**outputs, **paths}, which


@dataclass
class PrunePlan:
    """A checked flow: options, the resolved ``--from`` and the run config with the source's model."""

    config: RunConfig
    opts: PruneOptions
    src: Source | None


def plan_prune(config: RunConfig) -> PrunePlan:
    """Check options and ``--from`` before anything is written (the CLI calls this before creating the run)."""
    opts = PruneOptions.from_dict(config.prune)
    src = open_source(opts.source, opts.source_checkpoint) if opts.source else None
    if src is not None:
        config = dataclasses.replace(config, model=src.model_config())
    config = dataclasses.replace(config, prune=opts.to_dict())
    from sparsecap_engine.training.setup import check_config

    check_config(config)
    if opts.method not in ("fixed", "lottery"):
        make_method(opts, config.train.steps)  # the method's own option checks (no model needed)
    if opts.method == "lottery":
        _lottery_checks(opts, src)
    return PrunePlan(config, opts, src)


def _lottery_checks(opts: PruneOptions, src: Source | None) -> Path:
    """The rewind checkpoint of a lottery flow (errors when the source cannot give one)."""
    if src is None or src.run is None:
        raise UsageError("lottery needs --from a trained run directory (its init checkpoint is the rewind point)")
    k = opts.rewind_step
    rewind = src.run.checkpoints / ("init.safetensors" if k == 0 else f"step-{k}.safetensors")
    if not rewind.is_file():
        if k == 0:
            raise CheckpointError(f"lottery: {src.run.path} has no init checkpoint ({rewind.name}) to rewind to")
        hint = f"train it with --set train.keep_steps=[{k}]"
        raise CheckpointError(f"lottery: {src.run.path} has no {rewind.name}; {hint}")
    if masks_path(src.checkpoint).is_file():
        made_by = src.run.load_config().prune.get("method", "")
        if made_by in ("magnitude", "fixed"):
            raise UsageError(f"lottery: {src.run.path} was pruned from trained weights ({made_by}), so its init "
                             "checkpoint is no initialisation; use its dense source or a gradual/snip/supermask run")
        if opts.rounds > 1:
            raise UsageError("--rounds > 1 needs a dense --from run (this one is already pruned)")
    return rewind


def run_prune(
    config: RunConfig,
    run: RunDir,
    progress: Progress = no_progress,
    stop: Callable[[], bool | str | None] | None = None,
    plan: PrunePlan | None = None,
    resume: bool = False,
) -> PruneResult:
    """Run the pruning flow described by ``config.prune`` in ``run`` (``resume``: continue it from its trainer
    state; lottery runs, made of rounds, cannot resume)."""
    from sparsecap_engine.recipes.train import train
    from sparsecap_engine.training.setup import fit_encoder, load_splits, resolve_model

    plan = plan or plan_prune(config)
    config, opts, src = plan.config, plan.opts, plan.src
    if resume and opts.method == "lottery":
        raise UsageError("lottery runs (prune, rewind, retrain in rounds) cannot resume; start again with --overwrite")
    splits = load_splits(config.data, vocab=src.vocab if src else None, progress=progress,
                         model=resolve_model(config.model))
    target = opts.sparsity
    notes: list[str] = []

    if opts.method == "lottery":
        res, method, target, run = _lottery(config, run, opts, src, splits, progress, stop, notes)
    else:
        masks = None
        if opts.method == "fixed":
            probe = build_model(fit_encoder(resolve_model(config.model), splits), len(splits.vocab))
            masks = read_masks_for(src.checkpoint, probe)
            target = mask_sparsity(masks)
            if target == 0.0 and opts.sparsity > 0.0:  # a dense source: fine-tuning it "fixed" prunes nothing
                raise UsageError(f"--method fixed keeps the masks of a pruned --from; {src.checkpoint} has none and "
                                 "no zero weights (prune it first, e.g. --method magnitude)")
        method = make_method(opts, config.train.steps, masks, target)
        if opts.method == "snip":
            method.loss_fn = xe_loss_fn(config, splits)
            method.reduce = current().average_  # each rank's block of the saliency batch, averaged
        res = train(config, run, progress, hooks=method, init_weights=src.state if src else None, stop=stop,
                    splits=splits, resume=resume)

    if res.status == "diverged":  # run_end says so; the last good checkpoint stays as it was
        raise DivergedError(res.message)
    reached = bool(res.reached)  # the recipe's end-of-run verdict: final masks within 5 % of the target, best kept
    if not current().is_main:  # rank 0 writes the pruned checkpoint and the tables
        return PruneResult(run, res.status, target, method.sparsity(), reached, res.target_message or res.message,
                           res.best_step, res.best_cider, res.last_metrics, {}, {}, list(method.warnings), notes)
    rep, outputs, which = finish(run, target, opts.method, reached)
    s = rep["pruned"]["sparsity"]
    msg = res.target_message or (f"target sparsity {percent(target)} {'reached' if reached else 'missed'}: "
                                 f"final {percent(s)}")
    if res.status in ("interrupted", "stopped"):
        msg = res.message
    if not reached:
        notes.append(f"no pruned checkpoint written; {which} is kept in {run.checkpoints} for inspection")
    return PruneResult(run, res.status, target, s, reached, msg, res.best_step, res.best_cider, res.last_metrics,
                       rep, outputs, list(method.warnings), notes)


def _lottery(config, run, opts, src, splits, progress, stop, notes):
    from sparsecap_engine.recipes.train import train
    from sparsecap_engine.training.setup import fit_encoder, resolve_model

    rewind_state, _ = read_state(_lottery_checks(opts, src))
    probe = build_model(fit_encoder(resolve_model(config.model), splits), len(splits.vocab))
    names = [n for n in prunable(probe) if not in_scope(n, opts.freeze)]
    src_masks = read_masks_for(src.checkpoint) if masks_path(src.checkpoint).is_file() else None
    trained, prev, sel = src.state, None, None
    target = opts.sparsity
    if src_masks is not None:
        target = mask_sparsity(src_masks)
        notes.append(f"masks taken from {src.checkpoint} (sparsity {percent(target)})")
    res = method = round_run = None
    for r in range(1, opts.rounds + 1):
        s_r = 1.0 - (1.0 - target) ** (r / opts.rounds)
        if src_masks is not None:
            masks = src_masks
        else:
            missing = [n for n in names if n not in trained]
            if missing:
                raise CheckpointError(f"{src.checkpoint}: no weight {missing[0]!r}")
            sel = select(opts.criterion, {n: trained[n] for n in names}, s_r, prev, opts.min_density)
            masks = sel.masks
        last = r == opts.rounds
        round_run = run if last else current().on_main(
            lambda r=r: RunDir.create(run.path / "rounds" / f"round-{r}", overwrite=True))
        method = make_method(opts, config.train.steps, masks, s_r)
        if sel is not None:
            method.warnings = sel.warnings()
        res = train(config, round_run, progress, hooks=method, init_weights=rewind_state, stop=stop, splits=splits)
        if res.status != "completed" and not last:
            notes.append(f"round {r} of {opts.rounds} ended {res.status}; outputs are in {round_run.path}")
            break
        trained = read_state(round_run.checkpoint("best"))[0]
        prev = {n: m.to(torch.bool) for n, m in masks.items()}
    return res, method, target, round_run
