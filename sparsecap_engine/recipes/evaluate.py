"""Evaluate a run on a split: decode, write COCO-format captions, score with pycocoevalcap, write scores.json."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecap_engine.atomic import atomic_write_text, check_target
from sparsecap_engine.checkpoint.model_io import load_model
from sparsecap_engine.checkpoint.source import checkpoint_file
from sparsecap_engine.data.captions import CaptionSet, load_records
from sparsecap_engine.decoding.api import DecodeOptions, caption_images, decode_tag
from sparsecap_engine.errors import UsageError
from sparsecap_engine.metrics.coco import evaluate_captions, require_java, resolve_metrics
from sparsecap_engine.progress import Progress, no_progress
from sparsecap_engine.runs import RunDir
from sparsecap_engine.training.setup import dataset_path, open_features, resolve_device


@dataclass
class EvalReport:
    split: str
    out_dir: Path
    scores: dict[str, float | None]
    unavailable: dict[str, str]
    n_images: int
    #: the images of the split (``n_images`` is fewer when ``--limit`` cut it)
    split_images: int = 0
    #: the limit that cut the split (0: every image was scored)
    limit: int = 0
    baseline: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    captions: dict[int, str] = field(default_factory=dict)
    per_image: dict[int, dict[str, float]] = field(default_factory=dict)


def most_frequent_caption(records) -> str:
    """The trivial baseline: the most frequent training caption (ties broken alphabetically)."""
    counts = Counter(" ".join(c) for r in records if r.split == "train" for c in r.captions)
    return min(counts, key=lambda c: (-counts[c], c))


def evaluate_run(
    run_path: Path,
    split: str = "test",
    opts: DecodeOptions | None = None,
    which: str = "best",
    metrics: list[str] | None = None,
    baseline: bool = False,
    device: str = "auto",
    limit: int = 0,
    progress: Progress = no_progress,
    per_image_path: Path | None = None,
) -> EvalReport:
    """Caption every image of ``split`` with the run's ``which`` checkpoint and score it.

    Writes ``eval/<split>-<decoding>/`` (e.g. ``test-beam3``), or ``eval/<split>-<decoding>-limit<N>/`` when
    ``limit`` scores only the first N images of the split (so a quick look never replaces the full evaluation):
    ``captions.json`` (COCO results format) and ``scores.json`` (corpus and per-image scores); ``per_image_path``
    also gets a per-image table (``.csv`` or JSON).
    """
    if split not in ("train", "val", "test"):
        raise UsageError(f"unknown split {split!r}; choose from train, val, test")
    if limit < 0:
        raise UsageError(f"--limit must be ≥ 0 (0 = every image), got {limit}")
    if per_image_path is not None:
        check_target(Path(per_image_path))  # a folder or an empty name: refused before the decoding
    run = RunDir.open(run_path)
    resolve_metrics(metrics)
    require_java()
    config = run.load_config()
    opts = (opts or DecodeOptions(max_len=config.data.max_len)).check()
    dev = resolve_device(device)
    model, vocab, meta = load_model(checkpoint_file(run.path, which), dev)
    root = Path(config.data.image_root) if config.data.image_root else None
    records = load_records(dataset_path(config.data), root, config.data.use_raw)
    in_split = [r for r in records if r.split == split]
    chosen = in_split[: limit or None]
    limit = limit if len(chosen) < len(in_split) else 0  # a limit that keeps every image is a full evaluation
    if not chosen:
        raise UsageError(f"split {split!r} has no images in this run's dataset")
    features = open_features(config.data, dataset_path(config.data), progress)  # region-feature runs
    data = CaptionSet.build(chosen, vocab, config.data.max_len, config.data.image_size, progress, features)

    captions = caption_images(model, data, range(len(data)), vocab, opts, dev, progress=progress)
    hyps = {data.records[i].image_id: cap for i, cap in captions.items()}
    refs = data.references()
    out_dir = eval_dir(run.path, split, opts, limit)
    results = [{"image_id": k, "caption": v} for k, v in hyps.items()]
    result = evaluate_captions(refs, hyps, metrics, progress=progress)
    report = EvalReport(split, out_dir, result.corpus, result.unavailable, len(hyps), len(in_split), limit,
                        captions=hyps, per_image=result.per_image)
    payload: dict[str, Any] = {
        "split": split,
        "images": len(hyps),
        "split_images": len(in_split),
        "limit": limit or None,
        "checkpoint": which,
        "step": meta.get("step"),
        "decoding": {"tag": decode_tag(opts), **opts.to_dict()},
        "scores": result.corpus,
        "unavailable": result.unavailable,
        "per_image": {str(k): v for k, v in result.per_image.items()},
    }
    if baseline:
        caption = most_frequent_caption(records)
        base = evaluate_captions(refs, {k: caption for k in hyps}, metrics)
        report.baseline = {"caption": caption, "scores": base.corpus}
        payload["baseline"] = report.baseline
    if per_image_path is not None:  # first: a path that cannot be written fails before the run's eval folder is
        write_per_image(Path(per_image_path), hyps, result.per_image, refs)
    atomic_write_text(out_dir / "captions.json", json.dumps(results, indent=1))
    atomic_write_text(out_dir / "scores.json", json.dumps(payload, indent=1))
    return report


def eval_dir(run_path: Path, split: str, opts: DecodeOptions, limit: int = 0) -> Path:
    """``<run>/eval/<split>-<decoding>`` (e.g. ``test-beam3``); ``…-limit20`` for an evaluation of the first 20
    images only, which never shares the folder of the full one."""
    return Path(run_path) / "eval" / (f"{split}-{decode_tag(opts)}" + (f"-limit{limit}" if limit else ""))


def write_per_image(
    path: Path, hyps: dict[int, str], per_image: dict[int, dict[str, float]], refs: dict[int, list[str]]
) -> None:
    """One row per image: id, caption, each metric (and the first reference); CSV for ``*.csv``, else JSON."""
    metrics = list(dict.fromkeys(m for scores in per_image.values() for m in scores))
    rows = [
        {"image_id": k, "caption": hyps[k], **per_image.get(k, {}), "reference": (refs.get(k) or [""])[0]}
        for k in hyps
    ]
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, ["image_id", "caption", *metrics, "reference"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buf.getvalue())
    else:
        atomic_write_text(path, json.dumps(rows, indent=1))
