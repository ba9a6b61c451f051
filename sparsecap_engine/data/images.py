"""Image files to tensors with Pillow: load, resize, hold a small dataset in memory as uint8, normalise."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sparsecap_engine.errors import DataError
from sparsecap_engine.progress import Progress, no_progress

# Per-channel RGB mean and std of ImageNet (the usual constants for CNN inputs, also what pretrained ResNets expect).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


#: the model input sizes the engine accepts (a size beyond would allocate gigabytes per image)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 4096


def image_size_problem(size: object) -> str | None:
    """Why ``size`` cannot be a model's input size (``must be …``), or None when it can."""
    if isinstance(size, bool) or not isinstance(size, int):
        return f"must be an integer, got {size!r}"
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        return f"must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, got {size}"
    return None


def read_rgb(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB array; transparency is composited onto white; the aspect ratio is not kept.

    An image of more than Pillow's ``MAX_IMAGE_PIXELS`` (89 M) pixels is refused before it is decoded (a
    decompression bomb: a few kB on disk, gigabytes in memory)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(path, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"image too large to decode safely (over {Image.MAX_IMAGE_PIXELS:,} pixels): {path}") from None


def _decode(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG only: decode at a reduced scale that is still >= size
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.array(img, dtype=np.uint8)  # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise DataError(f"not an image file: {path}") from None


def load_image(path: Path, size: int) -> torch.Tensor:
    """Float32 (3, size, size) RGB tensor in [0, 1], resized (squashed) with Pillow's bilinear filter."""
    array = read_rgb(path, size)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0).contiguous()


def load_images_uint8(paths: Sequence[Path], size: int, progress: Progress = no_progress) -> torch.Tensor:
    """Uint8 (N, 3, size, size) tensor of all images (a small dataset kept in memory; 64 px: 12 KiB per image)."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    step = max(1, len(paths) // 100)
    for i, path in enumerate(paths):
        out[i] = torch.from_numpy(read_rgb(path, size)).permute(2, 0, 1)
        if (i + 1) % step == 0 or i + 1 == len(paths):
            progress("images", i + 1, len(paths))
    return out


def normalize(x: torch.Tensor) -> torch.Tensor:
    """``(x - MEAN) / STD`` per RGB channel for (3, H, W) or (B, 3, H, W); uint8 input is divided by 255 first.

    Floating input keeps its dtype; uint8 (or other integer) input comes back as float32.
    """
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected (3, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float().div(255.0)
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def check_image_paths(paths: Sequence[Path]) -> None:
    """Fail fast, before a model is loaded, on a path that is missing or is a folder."""
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"image not found: {path}")
