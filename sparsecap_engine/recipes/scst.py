"""The SCST stage (``sparsecap train --scst --from RUN``): the XE recipe with the SCST objective, starting from a
trained (possibly pruned: its masks stay fixed) model, with its own defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sparsecap_engine.checkpoint.source import Source, open_source
from sparsecap_engine.config import RunConfig
from sparsecap_engine.progress import Progress, no_progress
from sparsecap_engine.recipes.train import TrainResult, train
from sparsecap_engine.runs import RunDir
from sparsecap_engine.training.scst import CaptionReward, ScstOptions, scst_objective
from sparsecap_engine.training.setup import load_splits, resolve_model

#: what an SCST stage changes in the source run's config unless a flag or ``--set`` says otherwise (author: lr 5e-5)
DEFAULTS: dict[str, Any] = {"optim.lr": 5e-5, "optim.schedule": "constant", "optim.warmup": 0, "train.steps": 500}


def fixed_mask_hooks(src: Source) -> object | None:
    """The pruning package's ``fixed`` method holding the source's masks when the source was pruned, else None."""
    masks = src.masks()
    if masks is None:
        return None
    from sparsecap_engine.pruning.methods import build_method  # a plug-in the recipe is given, like any hooks

    numel = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return build_method("fixed", sparsity=1.0 - kept / max(1, numel), masks=masks)


def scst_config(base: RunConfig, options: dict[str, Any]) -> RunConfig:
    """The config of an SCST stage: ``base`` (the source run's, with flags applied) plus a checked ``[scst]``."""
    opts = ScstOptions.from_dict(options).check()
    train_cfg = dataclasses.replace(base.train, keep_steps=[])
    return dataclasses.replace(base, scst=opts.to_dict(), prune={}, train=train_cfg)


def run_scst(
    config: RunConfig,
    run: RunDir,
    progress: Progress = no_progress,
    stop: Callable[[], bool | str | None] | None = None,
    resume: bool = False,
    hooks: object | None = None,
) -> TrainResult:
    """Fine-tune the ``--from`` run's model with SCST in ``run`` (the XE recipe with the SCST objective).

    ``hooks`` default to the ``fixed`` pruning method when the source checkpoint has masks (a pruned run).
    """
    opts = ScstOptions.from_dict(config.scst).check()
    src = open_source(opts.source, opts.source_checkpoint)
    config = dataclasses.replace(config, model=src.model_config())
    splits = load_splits(config.data, vocab=src.vocab, progress=progress, model=resolve_model(config.model))
    refs = [[" ".join(c) for c in r.captions] for r in splits.train.records]
    reward = CaptionReward.for_run(run, refs, opts)
    objective = scst_objective(opts, splits.vocab, reward, config.data.max_len, config.train.seed)
    if hooks is None:
        hooks = fixed_mask_hooks(src)
    return train(config, run, progress, hooks=hooks, init_weights=None if resume else src.state, resume=resume,
                 stop=stop, splits=splits, objective=objective)
