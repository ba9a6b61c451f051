"""``sparsecap inspect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from sparsecap_cli.render import console, next_steps, q


def inspect(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file (dense or sparse) or a run directory."),
    params: bool = typer.Option(False, "--params", help="Per-module parameter breakdown."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a per-layer sparsity chart (PNG)."),
    bench: bool = typer.Option(False, "--bench", help="Time dense vs sparse CPU captioning of one image."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for --bench."),
) -> None:
    """Describe a checkpoint: model, vocabulary, step, metrics, parameters, per-tensor sparsity and storage, sizes."""
    from sparsecap_engine.checkpoint.inspect_report import bench_report, checkpoint_report, plot_sparsity
    from sparsecap_engine.humanize import human_bytes, percent

    if bench and not 1 <= threads <= 1024:
        from sparsecap_engine.errors import UsageError

        raise UsageError(f"--threads must be between 1 and 1024, got {threads}")
    original = checkpoint
    if checkpoint.is_dir():
        from sparsecap_engine.checkpoint.source import checkpoint_file

        checkpoint = checkpoint_file(checkpoint)
    info = checkpoint_report(checkpoint)
    breakdown = info.pop("_breakdown")
    if params:
        info["breakdown"] = breakdown
    if plot is not None:
        plot_sparsity(info["tensors"], plot, title=checkpoint.name)
        info["plot"] = str(plot)
    if bench:
        info["bench"] = bench_report(checkpoint, threads=threads)
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    table = Table(title=str(checkpoint), show_header=False)
    for key in ("format", "values", "encoder", "vocab_size", "step", "parameters"):
        table.add_row(key, _cell(info[key]))
    table.add_row("metrics", _cell(info["metrics"], decimals=4))  # scores: 4 decimals, as eval and train print
    words = info.get("output_words")
    if words:  # a pruned output layer can lose whole words: their logit is the bias alone
        table.add_row("words it can choose", f"{words['emit']:,} of {words['words']:,} ({words['layer']})")
    table.add_row("file size", f"{human_bytes(info['file_bytes'])} ({info['file_bytes']:,} bytes)")
    table.add_row("model", _cell(info["model"]))
    console.print(table, highlight=False)

    t = Table(title="pruned tensors")
    for col, just in (("tensor", "left"), ("shape", "left"), ("numel", "right"), ("nnz", "right"),
                      ("sparsity", "right"), ("bytes", "right"), ("storage", "left")):
        t.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for r in info["tensors"]:
        t.add_row(r["name"], "×".join(map(str, r["shape"])), f"{r['numel']:,}", f"{r['nnz']:,}",
                  percent(r["sparsity"]), human_bytes(r["bytes"]), r["storage"])
    tot = info["totals"]
    t.add_section()
    t.add_row("[bold]pruned total[/bold]", "", f"{tot['pruned']['numel']:,}", f"{tot['pruned']['nnz']:,}",
              percent(tot["pruned"]["sparsity"]), "", "")
    t.add_row("[bold]all parameters[/bold]", "", f"{tot['all']['numel']:,}", f"{tot['all']['nnz']:,}",
              percent(tot["all"]["sparsity"]), "", "")
    console.print(t)

    sizes = info["sizes"]
    s = Table(title="size on disk (file) vs computed equivalents (tensor bytes)")
    s.add_column("variant")
    s.add_column("bytes", justify="right")
    s.add_column("× file", justify="right")
    for key, value in sizes.items():
        s.add_row(key, human_bytes(value), f"{value / max(1, sizes['file']):.2f}")
    console.print(s)
    if params:
        p = Table(title="parameters per module")
        p.add_column("module")
        p.add_column("params", justify="right")
        p.add_column("share", justify="right")
        for name, n in breakdown.items():
            p.add_row(name, f"{n:,}", percent(n / max(1, info["parameters"])))
        console.print(p)
    if bench:
        b = info["bench"]
        bt = Table(title=f"greedy caption latency, one image, {b['threads']} thread(s), {b['max_len']} steps")
        for col in ("dense", "sparse (CSR)", "speed-up", "CSR layers"):
            bt.add_column(col, justify="right")
        bt.add_row(f"{b['dense_ms']:.1f} ms", f"{b['sparse_ms']:.1f} ms", f"{b['speedup']:.2f}×",
                   str(b["converted_layers"]))
        console.print(bt)
        if not b["same_tokens"]:
            console.print("[yellow]warning:[/yellow] the sparse model wrote different tokens than the dense one "
                          "(float rounding at a near tie, or a conversion fault): compare their captions")
    if plot is not None:
        console.print(f"sparsity chart: {plot}", highlight=False)
    next_steps(f"sparsecap export {q(original)} -o small.safetensors --values int8",
               f"sparsecap caption IMAGE --from {q(original)}")


def _cell(value: Any, decimals: int | None = None) -> str:
    """One header cell for people: a mapping as ``key: value`` lines, numbers in fixed notation, none as ``–``."""
    from sparsecap_engine.humanize import key_values, number

    if isinstance(value, dict):
        return key_values(value, sep="\n", decimals=decimals) if value else "–"
    return "–" if value is None else number(value, trim=True)
