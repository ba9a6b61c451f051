"""``sparsecap caption``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sparsecap_cli import decode_flags as df
from sparsecap_cli.commands.common import alias
from sparsecap_cli.render import console


def caption(
    images: list[Path] = typer.Argument(..., help="PNG/JPEG files, any size."),
    source: Path | None = typer.Option(None, "--from", help="The model: a run directory or a checkpoint file; without "
                                       "it, the bundled demo model (sparsecap models)."),
    checkpoint: str | None = typer.Option(None, "--checkpoint", help="best | last of --from RUN (default best)."),
    run: Path | None = typer.Option(None, "--run", hidden=True, help="Old name of --from RUN."),
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
    n_best: int = typer.Option(1, "--n-best", help="Print the n best captions per image with scores (beam, sample)."),
    max_len: int = typer.Option(20, "--max-len", help="Longest caption in tokens."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (auto: cuda when present, as eval)."),
    sparse: str = typer.Option("auto", "--sparse", help="auto | on | off: CSR kernels for pruned layers (CPU; "
                               "auto = on when the pruned weights are ≥ 80% zeros)."),
    as_json: bool = typer.Option(False, "--json", help="Print \\[{image, caption, captions: \\[{caption, score}]}] "
                                 "as JSON: one shape whatever --n-best (caption = the best, captions = the n best)."),
) -> None:
    """Print one caption per image (greedy, beam search or sampling); with --n-best N, the N best with scores.

    --json prints one object per image, {"image", "caption", "captions"}, whatever --n-best: "caption" is the best
    caption and "captions" the list of the n best, best first, each {"caption", "score"} (one entry when --n-best
    is 1).
    """
    from sparsecap_engine.data.images import check_image_paths
    from sparsecap_engine.errors import UsageError
    from sparsecap_engine.inference import Captioner

    opts = df.decode_options(beam, sample, max_len, temperature, top_k, top_p, seed, length_penalty, block_ngram,
                             min_len, bad_endings, n_best)
    check_image_paths(images)
    source = alias(source, run, "--from", "--run")
    if checkpoint is not None and checkpoint not in ("best", "last"):  # the old `--checkpoint FILE`
        source = alias(source, Path(checkpoint), "--from", "--checkpoint FILE")
        checkpoint = None
    if source is None:  # a fresh install: the bundled demo model
        from sparsecap_cli.render import err_console
        from sparsecap_engine.pretrained import BUNDLED, bundled_path

        if checkpoint is not None:
            raise UsageError(f"--checkpoint {checkpoint} picks a checkpoint of --from RUN: give --from RUN")
        source = bundled_path("demo")
        err_console.print(f"[dim]no --from: the bundled demo model ({BUNDLED['demo']['about']})[/dim]",
                          highlight=False)
    captioner = Captioner.load_from(source, checkpoint or "best", device, sparse)
    if as_json:  # one shape for every --n-best: the best caption, and the list of the n best with their scores
        ranked = captioner.caption_nbest(images, opts)
        typer.echo(json.dumps([{"image": str(p), "caption": r[0][0] if r else "",
                                "captions": [{"caption": c, "score": s} for c, s in r]}
                               for p, r in zip(images, ranked, strict=True)]))
        return
    if n_best > 1:
        ranked = captioner.caption_nbest(images, opts)
        for path, rows in zip(images, ranked, strict=True):
            console.print(f"[bold]{path}[/bold]", highlight=False)
            for i, (text, score) in enumerate(rows, 1):
                console.print(f"  {i}. {text}  [dim]({score:.3f})[/dim]", highlight=False)
        return
    captions = captioner.caption(images, opts)
    for path, text in zip(images, captions, strict=True):
        console.print(f"[bold]{path}[/bold]: {text}" if len(images) > 1 else text, highlight=False)
