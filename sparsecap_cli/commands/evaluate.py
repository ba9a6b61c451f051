"""``sparsecap eval``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sparsecap_cli.render import console, progress_bar, scores_table


def evaluate(
    run: Path = typer.Argument(..., help="Run directory."),
    split: str = typer.Option("test", "--split", help="train | val | test."),
    beam: int = typer.Option(1, "--beam", help="Beam size (1 = greedy)."),
    max_len: int = typer.Option(20, "--max-len", help="Longest caption in tokens."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last."),
    metrics: str | None = typer.Option(None, "--metrics", help="Comma list: bleu,meteor,rouge,cider,spice."),
    baseline: bool = typer.Option(False, "--baseline", help="Also score 'always the most frequent train caption'."),
    limit: int = typer.Option(0, "--limit", help="Only the first N images (0 = all)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print scores as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Caption a split with pycocoevalcap scores (BLEU-1..4, METEOR, ROUGE-L, CIDEr; SPICE when it can run)."""
    from sparsecap_engine.decoding.api import DecodeOptions
    from sparsecap_engine.evaluation import evaluate_run

    opts = DecodeOptions(method="beam" if beam > 1 else "greedy", beam_size=beam, max_len=max_len)
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    with progress_bar(quiet or as_json) as progress:
        report = evaluate_run(run, split, opts, checkpoint, names, baseline, device, limit, progress)
    if as_json:
        out = {"split": split, "images": report.n_images, "scores": report.scores, "unavailable": report.unavailable}
        if report.baseline:
            out["baseline"] = report.baseline
        typer.echo(json.dumps(out, indent=1))
        return
    console.print(scores_table(f"{split}: {report.n_images} images", report.scores))
    for metric, reason in report.unavailable.items():
        console.print(f"[yellow]{metric} unavailable:[/yellow] {reason}")
    if report.baseline:
        console.print(scores_table(f"baseline: “{report.baseline['caption']}”", report.baseline["scores"]))
    console.print(f"captions and scores in {report.out_dir}")
