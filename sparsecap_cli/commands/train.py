"""``sparsecap train``."""

from __future__ import annotations

from pathlib import Path

import typer

from sparsecap_cli.commands.common import (
    alias,
    build_config,
    default_run_name,
    join_job,
    print_json,
    raise_for_status,
    resume_overrides,
    run_stoppable,
    training_flags,
)
from sparsecap_cli.render import console, next_steps, q, scores_table


def train(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML config file (flags override it)."),
    name: str | None = typer.Option(None, "--name", "-n", help="Run name (default: <preset>-<date>-<time>)."),
    runs_root: Path = typer.Option(Path("runs"), "--runs-root", help="Folder that holds run directories."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model: updown | transformer | ort."),
    preset: str | None = typer.Option(None, "--preset", help="Preset, e.g. ort-cpu, ort-paper, acort-base."),
    dataset: Path | None = typer.Option(None, "--dataset", help="Karpathy JSON (default: embedded synthetic set)."),
    image_root: Path | None = typer.Option(None, "--image-root", help="Folder the JSON's filepaths start from."),
    features: str | None = typer.Option(None, "--features", help="Region features: <id>.npy folder, .h5 or auto."),
    boxes: Path | None = typer.Option(None, "--boxes", help="Boxes for --features (folder or .h5)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="word | radix (default: the preset's, or word)."),
    radix_base: int | None = typer.Option(None, "--radix-base", help="Radix base b (vocabulary b+3), e.g. 768."),
    steps: int | None = typer.Option(None, "--steps", help="Optimiser steps."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step (× captions per image)."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    schedule: str | None = typer.Option(None, "--schedule", help="cosine | noam | step | constant."),
    label_smoothing: float | None = typer.Option(None, "--label-smoothing", help="Label smoothing ε."),
    grad_clip: float | None = typer.Option(None, "--grad-clip", help="Clip gradients (norm or value, 0 = off)."),
    val_every: int | None = typer.Option(None, "--val-every", help="Validate every N steps."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda."),
    amp: bool | None = typer.Option(None, "--amp/--no-amp", help="Mixed precision on CUDA."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    sets: list[str] | None = typer.Option(None, "--set", help="Any config key: section.key=value (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run --name from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty run directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print only a JSON summary at the end: {run, status, step, "
                                 "best_step, best_cider, metrics, message} (no progress)."),
    nproc: int = typer.Option(1, "--nproc", help="Train as N processes on this machine (DDP: torchrun "
                              "--standalone --nproc-per-node N); --batch-size stays the global batch.",
                              rich_help_panel="Scale out"),
    tui: bool = typer.Option(False, "--tui", help="Watch the run in the live monitor; quitting asks: stop or detach."),
    scst: bool = typer.Option(False, "--scst", help="Self-critical fine-tuning (SCST) of --from RUN, in a new run."),
    source: Path | None = typer.Option(None, "--from", help="SCST: the trained run (or checkpoint) to start from."),
    source_checkpoint: str | None = typer.Option(None, "--checkpoint", help="SCST: best | last of --from RUN "
                                                 "(default best)."),
    old_source_checkpoint: str | None = typer.Option(None, "--from-checkpoint", hidden=True,
                                                     help="Old name of --checkpoint."),
    scst_samples: int = typer.Option(5, "--scst-samples", help="SCST: captions drawn per image (n)."),
    scst_sample: str = typer.Option("random", "--scst-sample", help="SCST: random (multinomial) | beam (n beams)."),
    scst_baseline: str = typer.Option("greedy", "--scst-baseline", help="SCST: greedy | mean (leave-one-out, n≥2)."),
    cider_weight: float = typer.Option(1.0, "--cider-weight", help="SCST reward weight of CIDEr-D."),
    bleu_weight: str = typer.Option("0,0,0,0", "--bleu-weight", help="SCST reward weights of BLEU-1..4 (0,0,0,1)."),
) -> None:
    """Train a captioning model (XE). With no options: a small Up-Down model on the embedded synthetic dataset.

    With --scst --from RUN: fine-tune RUN's model by self-critical sequence training (reward CIDEr-D + BLEU-n).
    Data and training settings come from RUN; lr 5e-5, a constant schedule and 500 steps unless given.
    """
    from sparsecap_engine.errors import UsageError
    from sparsecap_engine.runs import RunDir, check_run_name
    source_checkpoint = alias(source_checkpoint, old_source_checkpoint, "--checkpoint", "--from-checkpoint") or "best"

    if name is not None:
        check_run_name(name)
    if nproc != 1:  # `sparsecap … --nproc N` re-launches itself under torchrun before this point (launch.py)
        raise UsageError("--nproc is handled by the sparsecap executable (`sparsecap train --nproc N …`)")
    if as_json:
        if tui:
            raise UsageError("--json prints a summary at the end; it cannot be combined with --tui")
        console.quiet, quiet = True, True
    from sparsecap_engine.recipes.train import train as train_run
    from sparsecap_engine.training.setup import check_config

    flags = {
        **training_flags(
            model=model, preset=preset, dataset=dataset, image_root=image_root, features=features, boxes=boxes,
            steps=steps, batch_size=batch_size, lr=lr, schedule=schedule, label_smoothing=label_smoothing,
            grad_clip=grad_clip, val_every=val_every, device=device, amp=amp, seed=seed,
        ),
        "data.tokenizer": tokenizer,
        "data.radix_base": radix_base,
    }
    if resume:
        given = {"scst": True if scst else None, "source": source}
        where = resume_overrides(name, config, {**flags, **given}, sets, {"source": "--from", "model.name": "--model"})
        run = RunDir.open(runs_root / name)
        cfg = run.load_config().override(where)
        if cfg.prune.get("method"):
            raise UsageError(f"{run.path} is a pruning run ({cfg.prune['method']}): resume it with "
                             f"`sparsecap prune --resume --name {name}`")
        if join_job(cfg).is_main:
            run.lock()  # held to the end: a second --resume of the run is refused, naming this process
    else:
        if scst:
            cfg = _scst_config(config, flags, sets, source, source_checkpoint, scst_samples, scst_sample,
                               scst_baseline, cider_weight, bleu_weight)
        elif source is not None:
            raise UsageError("--from starts an SCST stage (add --scst); to prune a run use `sparsecap prune --from`")
        else:
            cfg = build_config(config, flags, sets)
            if cfg.prune:
                raise UsageError(f"[prune] settings ({', '.join(f'prune.{k}' for k in cfg.prune)}) belong to "
                                 "`sparsecap prune`; `train` trains a dense model")
        check_config(cfg)
        path = runs_root / (name or default_run_name(cfg, "-scst" if scst else ""))
        run = join_job(cfg).on_main(lambda: RunDir.create(path, overwrite=overwrite))  # rank 0 creates, all get it
    train_fn = train_run
    if cfg.scst:
        from sparsecap_engine.recipes.scst import run_scst as train_fn  # the SCST stage: same recipe, SCST loss
    console.print(f"run: [bold]{run.path}[/bold]" + (f"  SCST from {cfg.scst['source']}" if cfg.scst else ""))
    result, signals = run_stoppable(lambda **kw: train_fn(cfg, run, resume=resume, **kw), run.path, tui, quiet)
    console.print(scores_table(f"validation (step {result.step})", result.last_metrics))
    best = f"{result.best_cider:.4f} at step {result.best_step}" if result.best_cider is not None else "none"
    console.print(f"{result.status}: best val CIDEr-D {best}; checkpoints in {run.checkpoints}")
    if result.status == "completed":
        next_steps(f"sparsecap eval {q(run.path)}", f"sparsecap prune --from {q(run.path)} --method magnitude "
                   "--sparsity 0.9", f"sparsecap monitor {q(run.path)}")
    if as_json:
        print_json({"run": str(run.path), "status": result.status, "step": result.step, "best_step": result.best_step,
                    "best_cider": result.best_cider, "metrics": result.last_metrics, "message": result.message,
                    "checkpoints": str(run.checkpoints)})
    raise_for_status(result.status, result.message, signals)


def _scst_config(config_file, flags, sets, source, which, samples, sample, baseline, cider_weight, bleu_weight):
    """Source run's config < SCST defaults < flags < ``--set``, plus the checked ``[scst]`` section."""
    from sparsecap_engine.errors import UsageError
    from sparsecap_engine.recipes.scst import DEFAULTS, scst_config

    if source is None:
        raise UsageError("--scst needs --from RUN (a trained run directory or checkpoint)")
    if not source.exists():
        raise UsageError(f"--from {source}: no such run directory or checkpoint")
    try:
        bleu = [float(w) for w in bleu_weight.split(",") if w.strip()]
    except ValueError:
        raise UsageError(f"--bleu-weight expects up to 4 comma-separated numbers, got {bleu_weight!r}") from None
    base = config_file
    run_dir = source if source.is_dir() else source.parent.parent if source.parent.name == "checkpoints" else None
    if base is None and run_dir is not None and (run_dir / "config.toml").is_file():
        base = run_dir / "config.toml"  # data, optimiser and training settings of the run being fine-tuned
    flags = {**flags, **{k: v for k, v in DEFAULTS.items() if flags.get(k) is None}}
    options = {"source": str(source.resolve()), "source_checkpoint": which, "samples": samples, "sample": sample,
               "baseline": baseline, "cider_weight": cider_weight, "bleu_weights": bleu}
    return scst_config(build_config(base, flags, sets), options)
