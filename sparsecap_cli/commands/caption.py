"""``sparsecap caption``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sparsecap_cli.render import console


def caption(
    images: list[Path] = typer.Argument(..., help="PNG/JPEG files, any size."),
    run: Path | None = typer.Option(None, "--run", help="Run directory (uses its best checkpoint)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="A checkpoint file instead of a run."),
    beam: int = typer.Option(1, "--beam", help="Beam size (1 = greedy)."),
    max_len: int = typer.Option(20, "--max-len", help="Longest caption in tokens."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print [{image, caption}] as JSON."),
) -> None:
    """Print one caption per image."""
    from sparsecap_engine.decoding.api import DecodeOptions
    from sparsecap_engine.data.images import check_image_paths
    from sparsecap_engine.inference import Captioner

    check_image_paths(images)
    captioner = Captioner.load(run, checkpoint, device)
    opts = DecodeOptions(method="beam" if beam > 1 else "greedy", beam_size=beam, max_len=max_len)
    captions = captioner.caption(images, opts)
    if as_json:
        typer.echo(json.dumps([{"image": str(p), "caption": c} for p, c in zip(images, captions, strict=True)]))
        return
    for path, text in zip(images, captions, strict=True):
        console.print(f"[bold]{path}[/bold]: {text}" if len(images) > 1 else text, highlight=False)
