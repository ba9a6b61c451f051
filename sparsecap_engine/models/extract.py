"""Precompute grid features of a dataset's images with a pretrained CNN into one HDF5 feature file."""

from __future__ import annotations

from pathlib import Path

import h5py
import torch

from sparsecap_engine.data.features import write_h5_atomic
from sparsecap_engine.data.images import load_image
from sparsecap_engine.data.karpathy import load_karpathy
from sparsecap_engine.errors import UsageError
from sparsecap_engine.models.resnet import ResNetEncoder
from sparsecap_engine.progress import Progress, no_progress

RESNET_DEPTHS = {"resnet50": 50, "resnet101": 101}


def extract_features(
    dataset: Path,
    out: Path,
    weights: Path,
    encoder: str = "resnet101",
    image_root: Path | None = None,
    image_size: int = 224,
    grid: int = 0,
    batch_size: int = 16,
    dtype: str = "float32",
    device: str = "auto",
    progress: Progress = no_progress,
    width: int = 64,
) -> tuple[Path, int, int]:
    """Run ``encoder`` (weights from ``weights``) over every image of the Karpathy JSON ``dataset``.

    Writes ``/feats/<id>`` (cells, C) and ``/boxes/<id>`` (relative grid boxes) to ``out`` through a temp file.
    Returns (path, images, regions per image).
    """
    if encoder not in RESNET_DEPTHS:
        raise UsageError(f"unknown encoder {encoder!r}; choose from {', '.join(RESNET_DEPTHS)}")
    if dtype not in ("float16", "float32"):
        raise UsageError(f"dtype must be float16 or float32 (got {dtype!r})")
    if batch_size < 1 or image_size < 32:
        raise UsageError("batch size must be at least 1 and image size at least 32")
    records = load_karpathy(Path(dataset), image_root)
    if not records:
        raise UsageError(f"{dataset}: no images")
    net = ResNetEncoder(depth=RESNET_DEPTHS[encoder], weights=str(weights), freeze=True, grid=grid, width=width)
    from sparsecap_engine.training.setup import resolve_device

    dev = resolve_device(device)  # auto → cuda when present; a bad name is a one-line usage error
    net.to(dev).eval()
    np_dtype = {"float16": "float16", "float32": "float32"}[dtype]
    regions = {"n": 0}

    def fill(f: h5py.File) -> None:
        g, gb = f.create_group("feats"), f.create_group("boxes")
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            pixels = torch.stack([load_image(r.path, image_size) for r in chunk]).to(dev)
            with torch.no_grad():
                out_ = net({"images": pixels})
            feats = out_["feats"].float().cpu().numpy()
            boxes = out_["boxes"].float().cpu().numpy()
            for r, fe, bx in zip(chunk, feats, boxes, strict=True):
                g.create_dataset(str(r.image_id), data=fe.astype(np_dtype))
                gb.create_dataset(str(r.image_id), data=bx)
            regions["n"] = feats.shape[1]
            progress("extract", start + len(chunk), len(records))
        f.attrs["feat_dim"] = net.out_dim
        f.attrs["box_format"] = "relative"
        f.attrs["encoder"] = encoder
        f.attrs["image_size"] = image_size

    path = write_h5_atomic(Path(out), fill)
    return path, len(records), regions["n"]
