"""Region features of the synthetic dataset: one region per drawn object plus one for the whole image.

Each region's feature is its box's pixels average-pooled to 4×4 RGB (48 values in [0, 1]: colour and coarse shape)
followed by its relative box (4 values), i.e. ``FEAT_DIM`` = 52. Boxes are stored relative, so the Object Relation
Transformer runs on the scenes' real geometry. Written as ``features.h5`` beside ``dataset.json``.

For an image outside the dataset (``sparsecap caption`` of a fresh scene), :func:`propose_boxes` stands in for the
object detector that bottom-up features come from: the scenes' background is flat, so every connected blob of
non-background pixels is one object (objects are drawn at least 2 px apart).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from sparsecap_engine.data.features import write_h5_atomic
from sparsecap_engine.errors import DataError
from sparsecap_engine.progress import Progress, no_progress

POOL = 4
FEAT_DIM = POOL * POOL * 3 + 4
FEATURES_FILE = "features.h5"
#: checkpoint metadata ``regions`` of a model trained on these features: captioning an image computes them
REGIONS_NAME = "synthetic-scenes-v1"
#: a pixel is foreground when one channel differs from the background by more than this (of 255)
FOREGROUND_DIFF = 40
MIN_BLOB = 4


def region_descriptor(pixels: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """(H, W, 3) uint8 image, pixel box → 4×4 pooled RGB of the box + its relative box (``FEAT_DIM`` floats)."""
    h, w = pixels.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = min(max(x1, 0), w - 1), min(max(y1, 0), h - 1)
    x2, y2 = max(min(x2, w), x1 + 1), max(min(y2, h), y1 + 1)
    crop = Image.fromarray(pixels[y1:y2, x1:x2]).resize((POOL, POOL), Image.Resampling.BOX)
    pooled = np.asarray(crop, dtype=np.float32).reshape(-1) / 255.0
    rel = np.array([x1 / w, y1 / h, x2 / w, y2 / h], dtype=np.float32)
    return np.concatenate([pooled, rel]).astype(np.float32)


def propose_boxes(pixels: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Pixel boxes (x1, y1, x2, y2) of the connected non-background blobs of a flat-background scene, in reading order.

    The background is the median colour of the border; blobs smaller than ``MIN_BLOB`` pixels (noise) are dropped."""
    h, w = pixels.shape[:2]
    px = pixels.astype(np.int16)
    border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    background = np.median(border, axis=0)
    fg = (np.abs(px - background).max(axis=-1) > FOREGROUND_DIFF)
    seen = np.zeros_like(fg)
    boxes: list[tuple[float, float, float, float]] = []
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


def scene_regions(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, ``FEAT_DIM``) features and (N, 4) relative boxes of an image: the whole image, then each proposed object."""
    h, w = pixels.shape[:2]
    boxes = [(0.0, 0.0, float(w), float(h)), *propose_boxes(pixels)]
    feats = np.stack([region_descriptor(pixels, b) for b in boxes])
    return feats, feats[:, -4:].copy()


def export_synthetic_features(dataset_json: Path, out: Path | None = None, progress: Progress = no_progress) -> Path:
    """Write ``features.h5`` (``/feats/<id>``, ``/boxes/<id>`` relative) for a synthetic dataset's JSON."""
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
            feats = np.stack([region_descriptor(pixels, b) for b in boxes])
            g.create_dataset(str(iid), data=feats)
            gb.create_dataset(str(iid), data=feats[:, -4:])
            if (n + 1) % step == 0 or n + 1 == len(entries):
                progress("features", n + 1, len(entries))
        f.attrs["feat_dim"] = FEAT_DIM
        f.attrs["box_format"] = "relative"
        f.attrs["regions"] = REGIONS_NAME

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
