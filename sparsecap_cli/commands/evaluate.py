"""``sparsecap eval``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sparsecap_cli import decode_flags as df
from sparsecap_cli.render import console, next_steps, progress_bar, q, scores_table


def evaluate(
    run: Path = typer.Argument(..., help="Run directory."),
    split: str = typer.Option("test", "--split", help="train | val | test."),
    beam: int = df.BEAM,
    sample: bool = df.SAMPLE,
    temperature: float = df.TEMPERATURE,
    top_k: int = df.TOP_K,
    top_p: float = df.TOP_P,
    seed: int = df.SEED,
    length_penalty: str = df.LENGTH_PENALTY,
    block_ngram: int = df.BLOCK_NGRAM,
    min_len: int = df.MIN_LEN,
    bad_endings: bool = df.BAD_ENDINGS,
    max_len: int = typer.Option(20, "--max-len", help="Longest caption in tokens."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last."),
    metrics: str | None = typer.Option(None, "--metrics", help="Comma list: bleu,meteor,rouge,cider,spice."),
    baseline: bool = typer.Option(False, "--baseline", help="Also score 'always the most frequent train caption'."),
    limit: int = typer.Option(0, "--limit", help="Only the first N images (0 = all); written to its own "
                              "eval/<split>-<decoding>-limit<N>/ folder, never over the full evaluation."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    per_image: Path | None = typer.Option(None, "--per-image", help="Also write per-image scores (.csv or .json)."),
    as_json: bool = typer.Option(False, "--json", help="Print scores as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Caption a split with pycocoevalcap scores (BLEU-1..4, METEOR, ROUGE-L, CIDEr; SPICE when it can run).

    Greedy, beam search (--beam K) or sampling (--sample). Written to the run's eval/<split>-<decoding>/ folder
    (eval/<split>-<decoding>-limit<N>/ with --limit N): captions.json (COCO results format) and scores.json (corpus
    and per-image scores).
    """
    from sparsecap_engine.decoding.api import decode_tag
    from sparsecap_engine.recipes.evaluate import eval_dir, evaluate_run

    opts = df.decode_options(beam, sample, max_len, temperature, top_k, top_p, seed, length_penalty, block_ngram,
                             min_len, bad_endings)
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    with progress_bar(quiet or as_json) as progress:
        report = evaluate_run(run, split, opts, checkpoint, names, baseline, device, limit, progress, per_image)
    if as_json:
        out = {"split": split, "images": report.n_images, "limit": report.limit or None,
               "decoding": decode_tag(opts), "scores": report.scores, "unavailable": report.unavailable,
               "out_dir": str(report.out_dir)}
        if report.baseline:
            out["baseline"] = report.baseline
        typer.echo(json.dumps(out, indent=1))
        return
    console.print(scores_table(f"{split}: {report.n_images} images", report.scores))
    for metric, reason in report.unavailable.items():
        console.print(f"[yellow]{metric} unavailable:[/yellow] {reason}")
    if report.baseline:
        console.print(scores_table(f"baseline: “{report.baseline['caption']}”", report.baseline["scores"]))
    extra = f"; per-image scores in {per_image}" if per_image else ""
    if report.limit:
        full = eval_dir(report.out_dir.parent.parent, split, opts)
        console.print(f"first {report.n_images} of {report.split_images} {split} images only (--limit "
                      f"{report.limit}); the full evaluation (no --limit) goes to {full}", highlight=False)
    console.print(f"captions and scores in {report.out_dir}{extra}", highlight=False)
    next_steps(f"sparsecap caption IMAGE --from {q(run)}", f"sparsecap inspect {q(run)}")
