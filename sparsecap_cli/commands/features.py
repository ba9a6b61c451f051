"""``sparsecap data pack-features`` and ``sparsecap data extract-features``: region features on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sparsecap_cli.help_style import Command, examples
from sparsecap_cli.render import console, next_steps, progress_bar, q


def pack_features(
    feats_dir: Annotated[Path, typer.Argument(help="Folder of <image id>.npy (N, D) region features.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HDF5 file to write (replaced atomically).")],
    boxes: Annotated[
        Path | None, typer.Option("--boxes", help="Folder of <image id>.npy (N, 4) boxes \\[x1, y1, x2, y2].")
    ] = None,
    box_format: Annotated[str, typer.Option(help="auto | relative | absolute (pixels).")] = "auto",
    dtype: Annotated[str, typer.Option(help="Stored precision of the features: float32 | float16.")] = "float32",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Pack a folder of per-image .npy features (and boxes) into one HDF5 file for --features."""
    from sparsecap_engine.data.features import pack_features as pack

    with progress_bar(quiet) as progress:
        path, n = pack(feats_dir, out, boxes, dtype=dtype, box_format=box_format, progress=progress)
    console.print(f"{n} images -> {path}", highlight=False, soft_wrap=True)
    next_steps(f"sparsecap train --dataset DATASET.json --features {q(path)}")


def extract_features(
    dataset: Annotated[Path, typer.Option("--dataset", help="Karpathy JSON whose images to encode.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HDF5 file to write (replaced atomically).")],
    weights: Annotated[
        Path, typer.Option("--weights", help="ImageNet weights in torchvision layout (.safetensors or .pth).")
    ],
    encoder: Annotated[str, typer.Option("--encoder", help="resnet101 | resnet50.")] = "resnet101",
    image_root: Annotated[
        Path | None, typer.Option("--image-root", help="Folder the JSON's filepaths start from.")
    ] = None,
    image_size: Annotated[int, typer.Option(help="Images are resized to this square size (224 → 7×7 grid).")] = 224,
    grid: Annotated[int, typer.Option(help="Average-pool the grid to grid×grid cells (0 = as is).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 16,
    dtype: Annotated[str, typer.Option(help="Stored precision: float32 | float16.")] = "float32",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Encode every image of a dataset with a ResNet (weights from a local file) into grid features in HDF5."""
    from sparsecap_engine.models.extract import extract_features as extract

    with progress_bar(quiet) as progress:
        path, n, cells = extract(
            dataset, out, weights, encoder, image_root, image_size, grid, batch_size, dtype, device, progress
        )
    console.print(f"{n} images x {cells} regions -> {path}", highlight=False, soft_wrap=True)
    next_steps(f"sparsecap train --dataset {q(dataset)} --features {q(path)}")


def register(app: typer.Typer) -> None:
    """Add these commands to the ``data`` sub-app."""
    app.command(cls=Command, name="pack-features", epilog=examples("pack-features"))(pack_features)
    app.command(cls=Command, name="extract-features", epilog=examples("extract-features"))(extract_features)
