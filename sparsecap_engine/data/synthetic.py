"""The embedded default dataset: small rendered scenes of coloured shapes with truthful captions.

Each image holds 1-4 objects (colour x shape x size) placed without overlap on a light background (``scenes.py``).
Captions come from a small grammar with synonyms (``scene_grammar.py``): object lists, spatial relations between two
objects, positions in the image and counts. Everything is drawn from one ``random.Random`` per image, so the output
is byte-identical for a given seed. The dataset is written in the Karpathy JSON layout (``dataset.json`` +
``images/*.png``) with absolute object boxes, so the Karpathy loader serves it like COCO or Flickr; ``features.h5``
holds per-object region features and boxes.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import platformdirs

from sparsecap_engine.atomic import atomic_publish_dir, atomic_write_bytes
from sparsecap_engine.data.scene_grammar import describe_scene, tokenize
from sparsecap_engine.data.scenes import render_scene, sample_scene
from sparsecap_engine.errors import DataError, OutputError, UsageError
from sparsecap_engine.progress import Progress, no_progress

GENERATOR_VERSION = 1
DEFAULT_IMAGES = 5000
DEFAULT_SIZE = 64
DEFAULT_SEED = 0


# ------------------------------------------------------------------------------------------------------------ output


def _check_args(images: int, size: int, val_fraction: float, test_fraction: float) -> None:
    if images < 1:
        raise UsageError(f"images must be at least 1 (got {images})")
    if not 32 <= size <= 1024:
        raise UsageError(f"size must be between 32 and 1024 pixels (got {size})")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UsageError(f"val/test fractions must be >= 0 and sum to < 1 (got {val_fraction}, {test_fraction})")


def _is_synthetic(out: Path) -> bool:
    """True when ``out`` holds a dataset this generator wrote."""
    try:
        with open(out / "dataset.json", encoding="utf-8") as f:
            return json.load(f).get("dataset") == "synthetic"
    except (OSError, ValueError, AttributeError):
        return False


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"output exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()) and not _is_synthetic(out):
        raise DataError(f"refusing to overwrite a non-empty folder that is not a synthetic dataset: {out}")


def _publish(tmp: Path, out: Path, replace: bool) -> None:
    """Move the finished temp folder to ``out`` (an existing synthetic ``out`` is replaced or kept)."""
    atomic_publish_dir(tmp, out, replace, check=_check_target)


def _generate(
    out: Path,
    images: int,
    size: int,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    progress: Progress,
    replace: bool,
) -> Path:
    _check_args(images, size, val_fraction, test_fraction)
    out = Path(out).absolute()
    _check_target(out)
    n_val, n_test = round(images * val_fraction), round(images * test_fraction)
    n_train = images - n_val - n_test
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:  # a file on the way, a read-only or missing mount
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        (tmp / "images").mkdir()
        entries: list[dict[str, Any]] = []
        sentid = 0
        step = max(1, images // 100)
        for i in range(images):
            rng = random.Random(f"sparsecap-synthetic:{GENERATOR_VERSION}:{seed}:{i}")
            scene = sample_scene(rng, size)
            filename = f"{i:06d}.png"
            render_scene(scene, rng).save(tmp / "images" / filename, format="PNG")
            sentences = []
            for raw in describe_scene(scene, rng):
                sentences.append({"tokens": tokenize(raw), "raw": raw, "imgid": i, "sentid": sentid})
                sentid += 1
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            entries.append(
                {
                    "filepath": "images",
                    "filename": filename,
                    "imgid": i,
                    "cocoid": i,
                    "split": split,
                    "sentids": [s["sentid"] for s in sentences],
                    "sentences": sentences,
                    "width": scene.width,
                    "height": scene.height,
                    "objects": [
                        {"shape": o.shape, "color": o.color, "size": o.size, "box": list(o.box)} for o in scene.objects
                    ],
                }
            )
            if (i + 1) % step == 0 or i + 1 == images:
                progress("synthetic", i + 1, images)
        generator = {
            "version": GENERATOR_VERSION,
            "images": images,
            "size": size,
            "seed": seed,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
        }
        data = {"dataset": "synthetic", "generator": generator, "images": entries}
        with open(tmp / "dataset.json", "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        from sparsecap_engine.data.synthetic_features import export_synthetic_features

        export_synthetic_features(tmp / "dataset.json", tmp / "features.h5")  # region features + boxes (ORT)
        _publish(tmp, out, replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out / "dataset.json"


def generate_synthetic(
    out: Path,
    images: int = DEFAULT_IMAGES,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    progress: Progress = no_progress,
) -> Path:
    """Render ``images`` scenes of ``size`` px into ``out`` (Karpathy layout) and return the ``dataset.json`` path.

    Splits are contiguous: the first images are train, then val, then test. The dataset is built in a temp folder
    beside ``out`` and renamed into place; an existing ``out`` is replaced only if it is empty or a synthetic dataset.
    """
    return _generate(Path(out), images, size, seed, val_fraction, test_fraction, progress, replace=True)


def default_dataset_dir() -> Path:
    """Where the default dataset lives: ``$SPARSECAP_CACHE`` or the user cache dir, named by version and params."""
    root = os.environ.get("SPARSECAP_CACHE") or platformdirs.user_cache_dir("sparsecap")
    name = f"synthetic-v{GENERATOR_VERSION}-n{DEFAULT_IMAGES}-px{DEFAULT_SIZE}-seed{DEFAULT_SEED}"
    return Path(root) / name


def ensure_default_dataset(progress: Progress = no_progress) -> Path:
    """Path of the default dataset's ``dataset.json``, generated on first use (safe if two processes race)."""
    out = default_dataset_dir()
    if (out / "dataset.json").is_file():
        return out / "dataset.json"
    return _generate(out, DEFAULT_IMAGES, DEFAULT_SIZE, DEFAULT_SEED, 0.1, 0.1, progress, replace=False)


def render_sample(out: Path, seed: int = 12345, size: int = 256) -> tuple[Path, list[str]]:
    """Render one fresh scene (not from the dataset) as a PNG of ``size`` px; returns (path, true captions)."""
    rng = random.Random(seed)
    scene = sample_scene(rng, size)
    out = Path(out)
    buf = io.BytesIO()
    render_scene(scene, rng).save(buf, format="PNG")  # PNG whatever the name says; a bad path is one OutputError
    atomic_write_bytes(out, buf.getvalue())
    return out, describe_scene(scene, rng)
