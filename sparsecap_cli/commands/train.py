"""``sparsecap train``."""

from __future__ import annotations

from pathlib import Path

import typer

from sparsecap_cli.commands.common import build_config, default_run_name
from sparsecap_cli.render import console, progress_bar, scores_table


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
    tui: bool = typer.Option(False, "--tui", help="Watch the run in the live monitor; quitting asks: stop or detach."),
) -> None:
    """Train a captioning model (XE). With no options: a small Up-Down model on the embedded synthetic dataset."""
    from sparsecap_engine.runs import RunDir
    from sparsecap_engine.training.recipe import train as train_run
    from sparsecap_engine.training.setup import check_config

    if resume:
        if not name:
            raise typer.BadParameter("--resume needs --name of the run to continue")
        run = RunDir.open(runs_root / name)
        cfg = run.load_config()
    else:
        flags = {
            "model.name": model,
            "model.preset": preset,
            "data.dataset": str(dataset) if dataset else None,
            "data.image_root": str(image_root) if image_root else None,
            "data.features": features,
            "data.boxes": str(boxes) if boxes else None,
            "data.tokenizer": tokenizer,
            "data.radix_base": radix_base,
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
        cfg = build_config(config, flags, sets)
        check_config(cfg)
        run = RunDir.create(runs_root / (name or default_run_name(cfg)), overwrite=overwrite)
    console.print(f"run: [bold]{run.path}[/bold]")
    if tui:
        from sparsecap_cli.tui.attach import run_with_monitor

        result = run_with_monitor(lambda stop: train_run(cfg, run, resume=resume, stop=stop), run.path)
    else:
        with progress_bar(quiet) as progress:
            result = train_run(cfg, run, progress=progress, resume=resume)
    console.print(scores_table(f"validation (step {result.step})", result.last_metrics))
    best = f"{result.best_cider:.4f} at step {result.best_step}" if result.best_cider is not None else "none"
    console.print(f"{result.status}: best val CIDEr-D {best}; checkpoints in {run.checkpoints}")
