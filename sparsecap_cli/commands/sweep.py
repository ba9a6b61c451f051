"""``sparsecap sweep`` (and the hidden ``sparsecap sweep-measure`` each cell runs after training)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import typer
from rich.table import Table

from sparsecap_cli.render import console, err_console, next_steps, progress_bar, q

DEFAULT_METHODS = "dense,supermask,gradual,magnitude,lottery,snip"
DEFAULT_SPARSITY = "0.95,0.975,0.9875,0.991"


def sweep(
    name: str = typer.Option("paper", "--name", "-n", help="Sweep name: the folder <sweeps-root>/<name>."),
    methods: str | None = typer.Option(
        None, "--methods", help=f"Comma list of dense and pruning methods \\[default: {DEFAULT_METHODS}]."
    ),
    sparsity: str | None = typer.Option(
        None, "--sparsity", "-s", help=f"Comma list of target sparsities \\[default: {DEFAULT_SPARSITY}]."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c",
        help="Base config TOML (default: the packaged sweep_default.toml); its optional \\[sweep] table sets methods, "
        "sparsity, finetune_steps and metrics (flags win).",
    ),
    steps: int | None = typer.Option(None, "--steps", help="Dense steps D (default: the config's train.steps)."),
    finetune_steps: int | None = typer.Option(
        None, "--finetune-steps",
        help="Fine-tune steps F (default: the config's \\[sweep] finetune_steps; D // 3 with --steps).",
    ),
    metrics: str | None = typer.Option(
        None, "--metrics", help="Test metrics of every cell \\[default: bleu,meteor,rouge,cider]."
    ),
    sets: list[str] | None = typer.Option(None, "--set", help="Base config key: section.key=value (repeatable)."),
    sweeps_root: Path = typer.Option(Path("sweeps"), "--sweeps-root", help="Folder that holds sweep folders."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Cells run at once (CPU threads are divided between them)."),
    dry_run: bool = typer.Option(
        False, "--dry-run",
        help="Write the plan and print each cell's command; run none (a later run without it measures what they made).",
    ),
    launcher: str = typer.Option("local", "--launcher", help="local (child processes) | slurm (submitit)."),
    slurm_partition: str = typer.Option("", "--slurm-partition", help="slurm: partition."),
    slurm_time: int = typer.Option(240, "--slurm-time", help="slurm: time limit per cell, minutes."),
    slurm_gpus: int = typer.Option(0, "--slurm-gpus", help="slurm: GPUs per cell."),
    slurm_cpus: int = typer.Option(4, "--slurm-cpus", help="slurm: CPUs (and threads) per cell."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the sweep again: rerun every cell."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the results rows as JSON at the end."),
) -> None:
    """Run the paper's experiment: a grid of methods × sparsities on one base config, with a results table and plots.

    Budgets: dense trains D steps once; magnitude prunes it and fine-tunes F steps; lottery rewinds it to its init
    and retrains D + F steps; supermask, gradual and snip train with pruning for D + F steps (dense + fine-tune).

    Each cell is an ordinary run directory in <sweeps-root>/<name>/, beside plan.json, configs/, results.csv/.json/.md
    and plots/. Rerunning the same command skips finished cells and resumes the rest; a failed cell does not stop
    the others. Every cell is scored on the test split (greedy), exported (fp16 sparse) and timed (CPU, 1 thread).
    """
    from sparsecap_cli.commands.common import build_config, given_keys
    from sparsecap_engine.errors import RunError, UsageError
    from sparsecap_engine.recipes.sweep import SweepOptions, base_config, dry_run_lines, plan_sweep, prepare_folder
    from sparsecap_engine.recipes.sweep_run import run_sweep, threads_for
    from sparsecap_engine.runs import check_run_name

    check_run_name(name, "--sweeps-root", "sweep")
    file_cfg, grid = base_config(config)

    def listed(flag: str | None, key: str, default: str) -> list[str]:
        if flag is not None:
            return [v.strip() for v in flag.split(",") if v.strip()]
        value = grid.get(key, default)
        return [str(v).strip() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]

    method_list = listed(methods, "methods", DEFAULT_METHODS)
    try:
        sparsity_list = [float(s) for s in listed(sparsity, "sparsity", DEFAULT_SPARSITY)]
    except ValueError:
        raise UsageError(f"--sparsity expects comma-separated numbers, got {sparsity!r}") from None
    if finetune_steps is None and steps is None and "finetune_steps" in grid:  # a new D without F: F = D // 3
        finetune_steps = int(grid["finetune_steps"])
    metric_list = listed(metrics, "metrics", "bleu,meteor,rouge,cider")
    if launcher not in ("local", "slurm", "submitit-local"):
        raise UsageError(f"unknown launcher {launcher!r}; choose from local, slurm")
    opts = SweepOptions(methods=method_list, sparsity=sparsity_list, finetune_steps=finetune_steps, jobs=jobs,
                        launcher=launcher, overwrite=overwrite, slurm_partition=slurm_partition,
                        slurm_time=slurm_time, slurm_gpus=slurm_gpus, slurm_cpus=slurm_cpus,
                        metrics=metric_list)
    from sparsecap_engine.recipes.sweep import DEFAULT_CONFIG

    base = build_config(None, {"train.steps": steps}, sets, base=file_cfg,
                        explicit=given_keys(config or DEFAULT_CONFIG, {}, None))
    from sparsecap_engine.training.setup import check_config

    check_config(base)  # what every cell will run with: a bad value fails here, not in each cell
    plan = plan_sweep(base, sweeps_root / name, opts, name)
    if dry_run:
        prepare_folder(plan, overwrite)
        for line in dry_run_lines(plan, threads_for(opts)):
            typer.echo(line)
        return
    if not quiet and not as_json:
        console.print(f"sweep: [bold]{plan.folder}[/bold]  {len(plan.cells)} cells, launcher {launcher}, "
                      f"jobs {jobs}; dense {plan.dense_steps} steps, fine-tune {plan.finetune_steps}")
    got: list[int] = []

    def terminate(signum: int, frame: object) -> None:  # SIGTERM (kill, timeout, Slurm) stops cells like Ctrl-C
        got.append(signum)
        raise KeyboardInterrupt

    saved = signal.signal(signal.SIGTERM, terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        with progress_bar(quiet or as_json) as progress:
            result = run_sweep(plan, opts, progress)
    except KeyboardInterrupt:  # before or after the cells ran (run_sweep handles Ctrl-C while they run)
        err_console.print("[bold red]interrupted[/bold red]", highlight=False)
        raise typer.Exit(143 if got else 130) from None
    finally:
        if saved is not None:
            signal.signal(signal.SIGTERM, saved)
    if as_json:
        typer.echo(json.dumps(result.rows, indent=1))
    else:
        console.print(results_table(result.rows, plan.name))
        for cid in result.failed:
            message = result.messages.get(cid) or ""
            err_console.print(f"[yellow]{cid}:[/yellow] {message}", highlight=False, soft_wrap=True)
        console.print(f"results: {result.paths['md']} (+ .csv, .json); plots: {plan.folder / 'plots'}",
                      highlight=False)
        next_steps(f"sparsecap monitor {q(plan.folder)}", f"sparsecap eval {q(plan.folder)}/CELL --beam 3")
    if result.status == "interrupted":
        err_console.print("[bold red]interrupted:[/bold red] rerun the same command to resume", highlight=False)
        raise typer.Exit(143 if got else 130)
    if result.failed:
        raise RunError(f"{len(result.failed)} of {len(plan.cells)} cells did not complete "
                       f"({', '.join(result.failed)}); logs in {plan.folder / 'logs'}; rerun to retry them")


def results_table(rows: list[dict], name: str) -> Table:
    """The sweep's results as a rich table."""
    from sparsecap_engine.humanize import percent
    from sparsecap_engine.recipes.sweep_results import human_size

    table = Table(title=f"sweep {name}: test split, greedy decoding (all metrics in results.md)")
    cols = ("cell", "status", "sparsity", "NNZ", "CIDEr", "BLEU-4", "size", "ms", "×dense", "wall s")
    for col in cols:
        table.add_column(col, justify="left" if col in ("cell", "status") else "right")

    def num(value, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    for r in rows:
        colour = {"completed": "green", "target-missed": "yellow"}.get(r["status"], "red")
        table.add_row(r["cell"], f"[{colour}]{r['status']}[/{colour}]", percent(r["sparsity"]),
                      num(r["nnz"], ","), num(r["CIDEr"], ".3f"), num(r["Bleu_4"], ".3f"),
                      human_size(r["size_bytes"]), num(r["latency_ms"], ".1f"), num(r["latency_vs_dense"], ".2f"),
                      num(r["wall_s"], ".0f"))
    return table


def sweep_measure(
    run: Path = typer.Argument(..., help="A finished run directory (a sweep cell)."),
    repeat: int = typer.Option(20, "--repeat", help="Latency: timed repeats (median)."),
    device: str = typer.Option("auto", "--device", help="Evaluation device: auto | cpu | cuda."),
    metrics: str = typer.Option("bleu,meteor,rouge,cider", "--metrics", help="Test metrics."),
) -> None:
    """Measure a sweep cell: test scores, fp16 sparse export size and CPU latency into <run>/export/measure.json."""
    from sparsecap_engine.errors import UsageError
    from sparsecap_engine.recipes.sweep_measure import measure_run

    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {repeat}")

    result = measure_run(run, repeat=repeat, device=device, metrics=[m.strip() for m in metrics.split(",")])
    typer.echo(json.dumps({k: result[k] for k in ("scores", "size_bytes", "latency_ms")}))
