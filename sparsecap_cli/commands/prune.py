"""``sparsecap prune``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from sparsecap_cli.commands.common import (
    alias,
    default_run_name,
    join_job,
    print_json,
    prune_config,
    raise_for_status,
    resume_overrides,
    run_stoppable,
    training_flags,
)
from sparsecap_cli.render import console, next_steps, q, scores_table
from sparsecap_engine.errors import TargetMissedError, UsageError
from sparsecap_engine.humanize import percent


def prune(
    method: str | None = typer.Option(
        None, "--method", help="supermask|magnitude|gradual|lottery|snip|fixed (default supermask)."
    ),
    sparsity: float | None = typer.Option(
        None, "--sparsity", "-s", help="Target sparsity of pruned weights (default 0.95 = 95 %)."
    ),
    criterion: str | None = typer.Option(
        None, "--criterion", help="magnitude/gradual/lottery: blind | uniform | dist (default blind)."
    ),
    source: Path | None = typer.Option(
        None, "--from",
        help="Run directory (or checkpoint) to prune or fine-tune (config: prune.source). Without --config, a run "
        "directory's config.toml supplies the data, optimiser and training settings, but not its prune or scst "
        "sections: the pruning options come from the defaults, --set prune.* and these flags, so a supermask run "
        "can be pruned again with --method magnitude.",
    ),
    source_checkpoint: str | None = typer.Option(
        None, "--checkpoint", help="Checkpoint of --from RUN: best | last (default best)."
    ),
    old_source_checkpoint: str | None = typer.Option(
        None, "--from-checkpoint", hidden=True, help="Old name of --checkpoint."
    ),
    freeze: str | None = typer.Option(None, "--freeze", help="Comma list of name prefixes left dense."),
    min_density: float | None = typer.Option(None, "--min-density", help="Keep at least this density per layer."),
    recipe: str | None = typer.Option(
        None, "--recipe",
        help="supermask: robust (a scheduled global logit threshold, then fixed masks) | paper (the reference's "
        "sparsity loss) (default robust; see README 'Supermask recipes').",
    ),
    ramp_begin: float | None = typer.Option(
        None, "--ramp-begin", help="supermask robust: fraction of the run trained dense before pruning starts (0.2)."
    ),
    ramp_end: float | None = typer.Option(
        None, "--ramp-end", help="supermask robust: fraction of the run where the target is reached (0.6)."
    ),
    harden_at: float | None = typer.Option(
        None, "--harden-at", help="supermask robust: fraction of the run where the masks freeze (0.8)."
    ),
    mask_init: float | None = typer.Option(None, "--mask-init", help="supermask: initial logit (5.0)."),
    mask_lr: float | None = typer.Option(
        None, "--mask-lr", help="supermask: Adam lr of the mask logits (-1 = the recipe's)."
    ),
    mask_eps: float | None = typer.Option(
        None, "--mask-eps", help="supermask: Adam eps of the mask logits (-1 = the recipe's)."
    ),
    sparsity_weight: float | None = typer.Option(
        None, "--sparsity-weight", help="supermask --recipe paper: loss weight (-1 = auto: max(5, c/(1-s)))."
    ),
    prune_start: int | None = typer.Option(None, "--prune-start", help="gradual: first pruning step (T/15)."),
    prune_end: int | None = typer.Option(None, "--prune-end", help="gradual: last pruning step (T/2)."),
    prune_every: int | None = typer.Option(None, "--prune-every", help="gradual: steps between updates (T/113)."),
    initial_sparsity: float | None = typer.Option(None, "--initial-sparsity", help="gradual: s_i (0)."),
    rounds: int | None = typer.Option(None, "--rounds", help="lottery: iterative pruning rounds (1)."),
    rewind_step: int | None = typer.Option(None, "--rewind-step", help="lottery: rewind to step k of --from (0)."),
    snip_batches: int | None = typer.Option(None, "--snip-batches", help="snip: batches of saliency (1)."),
    config: Path | None = typer.Option(
        None, "--config", "-c",
        help="TOML config file. Pruning options: defaults < its prune section < --set prune.KEY=VALUE < the flags "
        "above, each flag only when given.",
    ),
    name: str | None = typer.Option(None, "--name", "-n", help="Run name (default: <model>-<method>-<s>-<time>)."),
    runs_root: Path = typer.Option(Path("runs"), "--runs-root", help="Folder that holds run directories."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (ignored with --from)."),
    preset: str | None = typer.Option(None, "--preset", help="Preset of hyper-parameters (ignored with --from)."),
    dataset: Path | None = typer.Option(None, "--dataset", help="Karpathy JSON (default: embedded synthetic set)."),
    image_root: Path | None = typer.Option(None, "--image-root", help="Folder the JSON's filepaths start from."),
    features: str | None = typer.Option(None, "--features", help="Region features: <id>.npy folder, .h5 or auto."),
    boxes: Path | None = typer.Option(None, "--boxes", help="Boxes for --features (folder or .h5)."),
    steps: int | None = typer.Option(None, "--steps", help="Optimiser steps (per round for lottery)."),
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
    resume: bool = typer.Option(False, "--resume", help="Continue the pruning run --name from its last checkpoint "
                                "(its own config and pruning options; other options are not allowed)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty run directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print only a JSON summary at the end: {run, status, method, "
                                 "target, sparsity, reached, message, best_step, best_cider, metrics, outputs}."),
    nproc: int = typer.Option(1, "--nproc", help="Train as N processes on this machine (DDP: torchrun "
                              "--standalone --nproc-per-node N); --batch-size stays the global batch.",
                              rich_help_panel="Scale out"),
    tui: bool = typer.Option(False, "--tui", help="Watch the run in the live monitor; quitting asks: stop or detach."),
) -> None:
    """Prune a captioning model to a target sparsity and write the pruned checkpoint, a per-layer table and chart.

    Train with pruning (supermask, gradual, snip) or prune a trained run then fine-tune (magnitude, lottery, fixed:
    these need --from RUN). Only checkpoints whose NNZ is within 5 % of the target's can become best. A run whose
    final masks miss the target (NNZ not within 5 %) ends with status target-missed, writes no pruned checkpoint
    (last/best and sparsity.csv/.json stay for inspection) and exits with code 1.
    """
    from sparsecap_engine.recipes.prune import plan_prune, run_prune
    from sparsecap_engine.runs import RunDir, check_run_name
    source_checkpoint = alias(source_checkpoint, old_source_checkpoint, "--checkpoint", "--from-checkpoint")

    if name is not None:
        check_run_name(name)
    if as_json:
        if tui:
            raise UsageError("--json prints a summary at the end; it cannot be combined with --tui")
        console.quiet, quiet = True, True
    if nproc != 1:  # `sparsecap … --nproc N` re-launches itself under torchrun before this point (launch.py)
        raise UsageError("--nproc is handled by the sparsecap executable (`sparsecap train --nproc N …`)")

    given = {
        "method": method,
        "sparsity": sparsity,
        "criterion": criterion,
        "source": str(source) if source is not None else None,
        "source_checkpoint": source_checkpoint,
        "freeze": [p.strip() for p in freeze.split(",") if p.strip()] if freeze is not None else None,
        "min_density": min_density,
        "recipe": recipe,
        "ramp_begin": ramp_begin,
        "ramp_end": ramp_end,
        "harden_at": harden_at,
        "mask_init": mask_init,
        "mask_lr": mask_lr,
        "mask_eps": mask_eps,
        "sparsity_weight": sparsity_weight,
        "start": prune_start,
        "end": prune_end,
        "every": prune_every,
        "initial_sparsity": initial_sparsity,
        "rounds": rounds,
        "rewind_step": rewind_step,
        "snip_batches": snip_batches,
    }
    flags = training_flags(
        model=model, preset=preset, dataset=dataset, image_root=image_root, features=features, boxes=boxes,
        steps=steps, batch_size=batch_size, lr=lr, schedule=schedule, label_smoothing=label_smoothing,
        grad_clip=grad_clip, val_every=val_every, device=device, amp=amp, seed=seed,
    )
    if resume:
        special = {"model.name": "--model", "source": "--from", "source_checkpoint": "--checkpoint",
                   "start": "--prune-start", "end": "--prune-end", "every": "--prune-every"}
        where = resume_overrides(name, config, {**given, **flags}, sets, special)
        run = RunDir.open(runs_root / name)
        cfg = run.load_config().override(where)
        if not cfg.prune.get("method"):
            raise UsageError(f"{run.path} is not a pruning run: resume it with "
                             f"`sparsecap train --resume --name {name}`")
        plan = plan_prune(cfg)
        if join_job(cfg).is_main:
            run.lock()  # held to the end: a second --resume of the run is refused, naming this process
    else:
        cfg = prune_config(config, flags, sets, {k: v for k, v in given.items() if v is not None})
        plan = plan_prune(cfg)  # every check before the run directory is created
        path = runs_root / (name or default_run_name(cfg, f"-{plan.opts.method}-{plan.opts.sparsity:g}"))
        run = join_job(cfg).on_main(lambda: RunDir.create(path, overwrite=overwrite))  # rank 0 creates, all get it
    opts = plan.opts
    console.print(f"run: [bold]{run.path}[/bold]  method: [bold]{opts.method}[/bold]  "
                  f"target sparsity: {percent(opts.sparsity)}")
    result, signals = run_stoppable(lambda **kw: run_prune(cfg, run, plan=plan, resume=resume, **kw), run.path,
                                    tui, quiet)
    if not join_job(cfg).is_main:  # rank 0 reports and writes the outputs; the others exit as it does
        if result.status == "target-missed":
            raise TargetMissedError(result.message)
        raise_for_status(result.status, result.message, signals)
        return
    console.print(scores_table(f"validation ({result.status})", result.metrics))
    console.print(layer_table(result.report, result.target))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    best = f"{result.best_cider:.4f} at step {result.best_step}" if result.best_cider is not None else "none"
    if result.reached:
        console.print(f"[green]{result.message}[/green]", highlight=False)
        console.print(f"best val CIDEr-D {best}; pruned checkpoint {result.outputs['checkpoint']}")
    else:
        console.print(f"best val CIDEr-D {best}; no pruned checkpoint")
    console.print(f"sparsity table {result.outputs['csv']} (+ .json), chart {result.outputs['png']}")
    if result.reached:
        next_steps(f"sparsecap eval {q(run.path)}", f"sparsecap export {q(run.path)} -o {q(run.path.name)}.safetensors",
                   f"sparsecap caption IMAGE --from {q(run.path)}")
    if as_json:
        print_json({"run": str(run.path), "status": result.status, "method": opts.method, "target": result.target,
                    "sparsity": result.sparsity, "reached": result.reached, "message": result.message,
                    "best_step": result.best_step, "best_cider": result.best_cider, "metrics": result.metrics,
                    "outputs": {k: str(v) for k, v in result.outputs.items()}, "warnings": result.warnings})
    if result.status == "target-missed":
        raise TargetMissedError(result.message)  # one red line, exit code 1
    raise_for_status(result.status, result.message, signals)  # diverged: exit 1; interrupted: 130 / 143
    if not result.reached:  # stopped or interrupted before reaching the target: says so, keeps its status
        console.print(f"[yellow]{result.status}: {result.message}[/yellow]", highlight=False)


def layer_table(report: dict, target: float) -> Table:
    """Per-layer sparsity with totals."""
    table = Table(title=f"per-layer sparsity (target {percent(target)})")
    for col, justify in (("tensor", "left"), ("shape", "left"), ("nnz", "right"), ("numel", "right"),
                         ("sparsity", "right")):
        table.add_column(col, justify=justify)
    for name, t in report["tensors"].items():
        style = None if t["pruned"] else "dim"
        table.add_row(name, "×".join(map(str, t["shape"])), f"{t['nnz']:,}", f"{t['numel']:,}",
                      percent(t["sparsity"]), style=style)
    for key, label in (("pruned", "pruned tensors"), ("all", "all parameters")):
        tot = report[key]
        table.add_row(f"[bold]{label}[/bold]", "", f"{tot['nnz']:,}", f"{tot['numel']:,}", percent(tot["sparsity"]))
    return table
