"""Images/s of the training data path alone (issue 14): the region features of each step's block read and padded,
directly (0 workers, what a CPU run does) and by DataLoader workers (``data.workers``), side by side, on

1. the embedded synthetic dataset's ``features.h5`` (written on first use), and
2. a synthetic HDF5 feature store of ``--images`` images × ``--regions`` × ``--dim`` (fp16, like packed bottom-up
   features; written once to ``--store``, default a temporary folder).

    python benchmarks/bench_loader.py                          # 50,000 images × 36 × 2048 (about 7.4 GB)
    python benchmarks/bench_loader.py --images 5000 --dim 1024 --workers 0 2 4 --steps 100

The copy to the GPU is not included (``--pin`` pins the batches as a CUDA run does).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from sparsecap_engine.data.captions import ImageRecord
from sparsecap_engine.data.features import RegionFeatures
from sparsecap_engine.data.loader import PrefetchedSplit


class _Split:
    """Just what the loader needs of a training split: records and ``image_batch``."""

    def __init__(self, features: RegionFeatures, ids: list[int]):
        self.features = features
        self.records = [ImageRecord(image_id=i, path=Path(f"{i}.jpg"), split="train", captions=()) for i in ids]

    def __len__(self) -> int:
        return len(self.records)

    def image_batch(self, index):
        return self.features.batch([self.records[i] for i in index])


def write_store(path: Path, images: int, regions: int, dim: int) -> Path:
    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        g = f.create_group("feats")
        block = rng.standard_normal((regions, dim)).astype(np.float16)
        for i in range(images):
            g.create_dataset(str(i), data=np.roll(block, i, axis=0))
    tmp.rename(path)
    return path


def rate(split, batch: int, steps: int, workers: int, pin: bool, step_s: float = 0.0) -> float:
    """Images/s through ``PrefetchedSplit``; ``step_s``: a GPU-like training step after each batch (a sleep: it
    leaves the CPU free, as a step queued on the GPU does), so the workers' overlap shows."""
    gen = torch.Generator().manual_seed(0)
    blocks = [torch.randint(0, len(split), (batch,), generator=gen).tolist() for _ in range(steps)]
    data = PrefetchedSplit(split, blocks, workers, pin_memory=pin)
    data.image_batch(blocks[0])  # the workers' start-up is not the steady state
    t0 = time.perf_counter()
    for b in blocks[1:]:
        data.image_batch(b)
        if step_s:
            time.sleep(step_s)
    dt = time.perf_counter() - t0
    assert data.direct == 0
    data.close()
    return batch * (steps - 1) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--regions", type=int, default=36)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--store", type=Path, default=None, help="folder for the synthetic store (kept between runs)")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    ap.add_argument("--pin", action="store_true", help="pin batches (needs CUDA)")
    ap.add_argument("--step-ms", type=float, default=30.0, help="the GPU-like step of the second table (ms)")
    args = ap.parse_args()

    from sparsecap_engine.data.synthetic import ensure_default_dataset
    from sparsecap_engine.data.synthetic_features import ensure_synthetic_features

    embedded = ensure_synthetic_features(ensure_default_dataset())
    folder = args.store or Path(tempfile.gettempdir()) / "sparsecap-bench-loader"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = write_store(folder / f"feats-{args.images}x{args.regions}x{args.dim}.h5", args.images, args.regions,
                        args.dim)
    made = time.perf_counter() - t0
    print(f"store {store} ({store.stat().st_size / 2**30:.2f} GiB, ready in {made:.0f} s); "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    sources = {}
    with h5py.File(embedded, "r") as f:
        ids = [int(k) for k in f["feats"]] if "feats" in f else [int(k) for k in f]
    sources["embedded"] = _Split(RegionFeatures.open(embedded), ids)
    sources["store"] = _Split(RegionFeatures.open(store), list(range(args.images)))
    for split in sources.values():
        split.features.check(split.records[:1])
    tables = ((0.0, "the loader alone"), (args.step_ms / 1000, f"with a {args.step_ms:g} ms GPU-like step"))
    for step_s, title in tables:
        print(f"\n{title}: images/s, batch {args.batch}")
        print(f"{'source':<10} " + " ".join(f"{w:>2} workers" for w in args.workers))
        for name, split in sources.items():
            rates = [rate(split, args.batch, args.steps, w, args.pin, step_s) for w in args.workers]
            cells = " ".join(f"{r:>10.0f}" for r in rates)
            print(f"{name:<10} {cells}   ratios vs {args.workers[0]} workers: "
                  + ", ".join(f"{r / rates[0]:.2f}×" for r in rates))


if __name__ == "__main__":
    main()
