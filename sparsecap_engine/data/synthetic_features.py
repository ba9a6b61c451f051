"""Region features of the synthetic dataset: one region per drawn object plus one for the whole image.

Each region's feature is its box's pixels average-pooled to 4×4 RGB (48 values in [0, 1]: colour and coarse shape)
followed by its relative box (4 values), i.e. ``FEAT_DIM`` = 52. Boxes are stored relative, so the Object Relation
Transformer runs on the scenes' real geometry. Written as ``features.h5`` beside ``dataset.json``.
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

    return write_h5_atomic(out, fill)


def ensure_synthetic_features(dataset_json: Path, progress: Progress = no_progress) -> Path:
    """``features.h5`` beside a synthetic ``dataset.json``, written on first use."""
    path = Path(dataset_json).parent / FEATURES_FILE
    if path.is_file():
        return path
    return export_synthetic_features(dataset_json, path, progress)
