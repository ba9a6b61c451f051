"""``sparsecap export --check``: what a lossy sparse export costs — the run's test split captioned (greedy) with the
source checkpoint and with the exported one, both scored with pycocoevalcap's CIDEr-D."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_run(checkpoint: Path, src: Path, limit: int, device: str) -> Path:
    """The run whose test split ``--check`` captions (its data config), checked before any work: the run directory
    given, or the run holding the checkpoint file given; a one-line UsageError otherwise."""
    from sparsecap_engine.errors import UsageError
    from sparsecap_engine.metrics.coco import require_java
    from sparsecap_engine.runs import RunDir
    from sparsecap_engine.training.setup import resolve_device

    if limit < 0:
        raise UsageError(f"--limit must be ≥ 0 (0 = every test image), got {limit}")
    path = Path(checkpoint)
    if not path.is_dir():
        parent = src.parent.parent
        if src.parent.name != "checkpoints" or not (parent / "config.toml").is_file():
            raise UsageError(f"--check needs a run directory (its data config names the test split); {checkpoint} "
                             "is a checkpoint file outside a run: pass the run directory instead")
        path = parent
    RunDir.open(path).load_config()
    resolve_device(device)
    require_java()  # pycocoevalcap's tokenizer, as `sparsecap eval`
    return path


def check_export(run_path: Path, src: Path, out: Path, limit: int = 0, device: str = "auto",
                 progress=None) -> dict[str, Any]:
    """Caption the run's test split (greedy, as the sweep measures it) with ``src`` and with ``out`` and score both
    with pycocoevalcap's CIDEr-D (what ``sparsecap eval`` reports); writes nothing into the run."""
    from sparsecap_engine.checkpoint.model_io import load_model
    from sparsecap_engine.data.captions import CaptionSet, load_records
    from sparsecap_engine.decoding.api import DecodeOptions, caption_images
    from sparsecap_engine.errors import UsageError
    from sparsecap_engine.metrics.coco import evaluate_captions
    from sparsecap_engine.progress import no_progress
    from sparsecap_engine.runs import RunDir
    from sparsecap_engine.training.setup import dataset_path, open_features, resolve_device

    progress = progress or no_progress
    config = RunDir.open(run_path).load_config()
    opts = DecodeOptions(max_len=config.data.max_len).check()
    dev = resolve_device(device)
    dataset = dataset_path(config.data)
    root = Path(config.data.image_root) if config.data.image_root else None
    in_split = [r for r in load_records(dataset, root, config.data.use_raw) if r.split == "test"]
    chosen = in_split[: limit or None]
    if not chosen:
        raise UsageError("--check: the run's dataset has no test images")
    features = open_features(config.data, dataset, progress)
    data = None
    captions: dict[str, dict[int, str]] = {}
    scores: dict[str, float | None] = {}
    for tag, path in (("source", src), ("export", out)):
        model, vocab, _ = load_model(path, dev)
        if data is None:
            data = CaptionSet.build(chosen, vocab, config.data.max_len, config.data.image_size, progress, features)
        decoded = caption_images(model, data, range(len(data)), vocab, opts, dev, progress=progress,
                                 task=f"decode ({tag})")
        hyps = {data.records[i].image_id: cap for i, cap in decoded.items()}
        captions[tag] = hyps
        scores[tag] = evaluate_captions(data.references(), hyps, ["CIDEr"]).corpus["CIDEr"]
    before, after = scores["source"], scores["export"]
    return {
        "split": "test", "images": len(chosen), "split_images": len(in_split), "decoding": "greedy",
        "metric": "CIDEr-D", "source": before, "export": after,
        "change": None if before is None or after is None else after - before,
        "captions_changed": sum(captions["source"][k] != captions["export"].get(k) for k in captions["source"]),
    }
