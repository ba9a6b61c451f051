"""`sparsecap data ...`: dataset commands (generate the embedded synthetic dataset)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from sparsecap_cli.help_style import Command, Group, examples
from sparsecap_cli.render import console, next_steps, progress_bar, q
from sparsecap_engine.data.karpathy import load_karpathy
from sparsecap_engine.data.synthetic import DEFAULT_IMAGES, DEFAULT_SEED, DEFAULT_SIZE, generate_synthetic

DATA_HELP = "Datasets: the embedded synthetic scenes, one fresh scene, region features packed or extracted to HDF5."
app = typer.Typer(help=DATA_HELP, no_args_is_help=True, cls=Group)


@app.callback()
def _group() -> None:
    """Datasets: the embedded synthetic scenes, one fresh scene, region features packed or extracted to HDF5."""


@app.command(cls=Command, epilog=examples("synth"))
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write dataset.json and images/ into (replaced if "
                                      "synthetic).")],
    images: Annotated[int, typer.Option(min=1, max=1_000_000, help="Number of images to render.")] = DEFAULT_IMAGES,
    size: Annotated[int, typer.Option(min=32, max=1024, help="Image width and height in pixels.")] = DEFAULT_SIZE,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical files.")] = DEFAULT_SEED,
) -> None:
    """Render the synthetic scenes dataset (coloured shapes with captions) in the Karpathy JSON layout."""
    with progress_bar() as progress:
        path = generate_synthetic(out, images=images, size=size, seed=seed, progress=progress)
    records = load_karpathy(path)
    splits = Counter(r.split for r in records)
    captions = sum(len(r.captions) for r in records)
    console.print(
        f"synthetic dataset: {splits['train']} train / {splits['val']} val / {splits['test']} test images, "
        f"{captions} captions -> {path}",
        soft_wrap=True,
    )
    next_steps(f"sparsecap train --dataset {q(path)}")


@app.command(cls=Command, epilog=examples("scene"))
def scene(
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("scene.png"),
    seed: Annotated[int, typer.Option(help="Random seed of the scene.")] = 12345,
    size: Annotated[int, typer.Option(min=32, max=2048, help="Width and height in pixels.")] = 256,
) -> None:
    """Render one fresh synthetic scene as a PNG to caption (prints what it shows)."""
    from sparsecap_engine.data.synthetic import render_sample

    path, captions = render_sample(out, seed, size)
    console.print(f"{path}: {captions[0]}", highlight=False)
    next_steps(f"sparsecap caption {q(path)}")


from sparsecap_cli.commands import features as _features  # noqa: E402 - pack-features, extract-features

_features.register(app)
