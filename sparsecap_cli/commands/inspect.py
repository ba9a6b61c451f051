"""``sparsecap inspect``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from sparsecap_cli.render import console


def inspect(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file (.safetensors) or a run directory."),
    params: bool = typer.Option(False, "--params", help="Per-module parameter breakdown."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Describe a checkpoint: model, encoder, vocabulary, step, metrics, parameters."""
    from sparsecap_engine.checkpoint.model_io import load_model
    from sparsecap_engine.models.summary import parameter_breakdown

    if checkpoint.is_dir():
        from sparsecap_engine.runs import RunDir

        checkpoint = RunDir.open(checkpoint).checkpoint("best")
    model, vocab, meta = load_model(checkpoint)
    breakdown = parameter_breakdown(model)
    info = {
        "checkpoint": str(checkpoint),
        "format": meta.get("format"),
        "model": meta.get("model"),
        "encoder": meta.get("encoder"),
        "vocab_size": len(vocab),
        "step": meta.get("step"),
        "metrics": meta.get("metrics"),
        "parameters": breakdown["total"],
        "file_bytes": checkpoint.stat().st_size,
    }
    if params:
        info["breakdown"] = breakdown["modules"]
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    table = Table(title=str(checkpoint), show_header=False)
    for key in ("format", "encoder", "vocab_size", "step", "metrics", "parameters", "file_bytes"):
        table.add_row(key, str(info[key]))
    table.add_row("model", json.dumps(info["model"]))
    console.print(table)
    if params:
        t = Table(title="parameters per module")
        t.add_column("module")
        t.add_column("params", justify="right")
        t.add_column("share", justify="right")
        for name, n in breakdown["modules"].items():
            t.add_row(name, f"{n:,}", f"{100 * n / max(1, breakdown['total']):.1f}%")
        console.print(t)
