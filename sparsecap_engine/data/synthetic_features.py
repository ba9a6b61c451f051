"""Region features of the synthetic dataset: one region per drawn object plus one for the whole image.

Two descriptor versions, chosen by name (a checkpoint's ``regions`` metadata says which one it was trained on, so a
model of either version captions PNGs with the descriptor it learnt):

- ``synthetic-scenes-v1``: the box's pixels average-pooled to 4×4 RGB (48 values in [0, 1]: colour and coarse shape)
  and the relative box (4 values): 52 floats.
- ``synthetic-scenes-v2`` (the default since v1's 4×4 grid confused small circles, squares and diamonds): the same
  48 colour values, then the box's foreground (pixels that differ from the scene's background) pooled to an 8×8
  occupancy grid (64 values: the outline, independent of colour), then the relative box: 116 floats.

Boxes are stored relative, so the Object Relation Transformer runs on the scenes' real geometry. Written as
``features.h5`` beside ``dataset.json``.

For an image outside the dataset (``sparsecap caption`` of a fresh scene), :func:`propose_boxes` stands in for the
object detector that bottom-up features come from: the scenes' background is flat, so every connected blob of
non-background pixels is one object (objects are drawn at least 2 px apart).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from sparsecap_engine.data.features import write_h5_atomic
from sparsecap_engine.errors import DataError
from sparsecap_engine.progress import Progress, no_progress

POOL = 4
SHAPE_POOL = 8
FEATURES_FILE = "features.h5"
V1, V2 = "synthetic-scenes-v1", "synthetic-scenes-v2"
#: checkpoint metadata ``regions`` of a model trained on the default features: captioning an image computes them
REGIONS_NAME = V2
#: floats per region of each descriptor version
FEAT_DIMS = {V1: POOL * POOL * 3 + 4, V2: POOL * POOL * 3 + SHAPE_POOL * SHAPE_POOL + 4}
FEAT_DIM = FEAT_DIMS[REGIONS_NAME]
#: a pixel is foreground when one channel differs from the background by more than this (of 255)
FOREGROUND_DIFF = 40
MIN_BLOB = 4


Box = tuple[float, float, float, float]


def foreground(pixels: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of a flat-background scene that differ from its background (the border's median
    colour) by more than ``FOREGROUND_DIFF`` in some channel."""
    px = pixels.astype(np.int16)
    border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    background = np.median(border, axis=0)
    return np.abs(px - background).max(axis=-1) > FOREGROUND_DIFF


def _pixel_box(shape: tuple[int, ...], box: Box) -> tuple[int, int, int, int]:
    """A box rounded to pixels and clipped to the image, at least one pixel wide and high."""
    h, w = shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = min(max(x1, 0), w - 1), min(max(y1, 0), h - 1)
    return x1, y1, max(min(x2, w), x1 + 1), max(min(y2, h), y1 + 1)


def _pool(array: np.ndarray, size: int) -> np.ndarray:
    """A uint8 (h, w[, 3]) crop average-pooled to size × size, flattened, in [0, 1]."""
    pooled = Image.fromarray(array).resize((size, size), Image.Resampling.BOX)
    return np.asarray(pooled, dtype=np.float32).reshape(-1) / 255.0


def region_descriptor(pixels: np.ndarray, box: Box, fg: np.ndarray | None) -> np.ndarray:
    """(H, W, 3) uint8 image, pixel box → its descriptor: 4×4 pooled RGB of the box, its 8×8 occupancy in the
    foreground mask ``fg`` when one is given (v2; None: v1), its relative box."""
    h, w = pixels.shape[:2]
    x1, y1, x2, y2 = _pixel_box(pixels.shape, box)
    parts = [_pool(pixels[y1:y2, x1:x2], POOL)]
    if fg is not None:
        parts.append(_pool(fg[y1:y2, x1:x2].astype(np.uint8) * 255, SHAPE_POOL))
    parts.append(np.array([x1 / w, y1 / h, x2 / w, y2 / h], dtype=np.float32))
    return np.concatenate(parts).astype(np.float32)


def image_descriptors(pixels: np.ndarray, boxes: list[Box], regions: str) -> np.ndarray:
    """(N, ``FEAT_DIMS[regions]``) descriptors of an image's boxes in the ``regions`` version (v2: the foreground
    computed once per image)."""
    if regions not in FEAT_DIMS:
        raise DataError(f"unknown synthetic region descriptor {regions!r} (known: {', '.join(FEAT_DIMS)})")
    fg = foreground(pixels) if regions == V2 else None
    return np.stack([region_descriptor(pixels, b, fg) for b in boxes])


def propose_boxes(pixels: np.ndarray) -> list[Box]:
    """Pixel boxes (x1, y1, x2, y2) of the connected non-background blobs of a flat-background scene, in reading order.

    The background is the median colour of the border; blobs smaller than ``MIN_BLOB`` pixels (noise) are dropped."""
    h, w = pixels.shape[:2]
    fg = foreground(pixels)
    seen = np.zeros_like(fg)
    boxes: list[Box] = []
    for y0, x0 in zip(*np.nonzero(fg), strict=True):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        stack, ys, xs = [(int(y0), int(x0))], [], []
        while stack:
            y, x = stack.pop()
            ys.append(y)
            xs.append(x)
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and fg[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        if len(ys) >= MIN_BLOB:
            boxes.append((float(min(xs)), float(min(ys)), float(max(xs) + 1), float(max(ys) + 1)))
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def scene_regions(pixels: np.ndarray, regions: str = REGIONS_NAME) -> tuple[np.ndarray, np.ndarray]:
    """(N, ``FEAT_DIMS[regions]``) features and (N, 4) relative boxes of an image: the whole image, then each proposed
    object."""
    h, w = pixels.shape[:2]
    feats = image_descriptors(pixels, [(0.0, 0.0, float(w), float(h)), *propose_boxes(pixels)], regions)
    return feats, feats[:, -4:].copy()


#: how each known ``regions`` name computes an image's regions (captioning a PNG with a checkpoint that names one)
REGION_EXTRACTORS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    name: partial(scene_regions, regions=name) for name in FEAT_DIMS
}


def export_synthetic_features(
    dataset_json: Path, out: Path | None = None, progress: Progress = no_progress, regions: str = REGIONS_NAME
) -> Path:
    """Write ``features.h5`` (``/feats/<id>``, ``/boxes/<id>`` relative) for a synthetic dataset's JSON, with the
    ``regions`` descriptor version (an unknown one: the first image's descriptors raise, inside the atomic write)."""
    dataset_json = Path(dataset_json)
    out = Path(out) if out is not None else dataset_json.parent / FEATURES_FILE
    try:
        data = json.loads(dataset_json.read_text(encoding="utf-8"))
        entries = data["images"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"{dataset_json}: not a readable synthetic dataset JSON") from None

    def fill(f: h5py.File) -> None:
        g, gb = f.create_group("feats"), f.create_group("boxes")
        step = max(1, len(entries) // 100)
        for n, entry in enumerate(entries):
            iid = entry.get("cocoid", entry.get("imgid"))
            if "objects" not in entry or iid is None:
                raise DataError(f"{dataset_json}: image #{n} has no objects/id (not a synthetic dataset)")
            path = dataset_json.parent / entry.get("filepath", "") / entry["filename"]
            try:
                with Image.open(path) as img:
                    pixels = np.asarray(img.convert("RGB"))
            except OSError:
                raise DataError(f"{dataset_json}: image {iid} not readable at {path}") from None
            h, w = pixels.shape[:2]
            boxes = [(0.0, 0.0, float(w), float(h))] + [tuple(float(v) for v in o["box"]) for o in entry["objects"]]
            feats = image_descriptors(pixels, boxes, regions)
            g.create_dataset(str(iid), data=feats)
            gb.create_dataset(str(iid), data=feats[:, -4:])
            if (n + 1) % step == 0 or n + 1 == len(entries):
                progress("features", n + 1, len(entries))
        f.attrs["feat_dim"] = FEAT_DIMS[regions]
        f.attrs["box_format"] = "relative"
        f.attrs["regions"] = regions

    return write_h5_atomic(out, fill)


def ensure_synthetic_features(dataset_json: Path, progress: Progress = no_progress) -> Path:
    """``features.h5`` beside a synthetic ``dataset.json``, written on first use (again when it predates
    ``REGIONS_NAME``)."""
    path = Path(dataset_json).parent / FEATURES_FILE
    if path.is_file():
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("regions") == REGIONS_NAME:
                    return path
        except OSError:
            pass  # torn or foreign: write it again
    return export_synthetic_features(dataset_json, path, progress)
