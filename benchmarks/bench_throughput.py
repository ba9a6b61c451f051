"""Batch throughput of ``eval``: images/s captioning the embedded test split with a pruned model run dense and run
sparse (CSR, ``--sparse on``), side by side in one run, for greedy and beam 3, batch sizes and thread counts.

    python benchmarks/bench_throughput.py RUN [RUN ...] [--images 500] [--batch 16 64] [--beam 1 3]
                                          [--threads 1 2] [--repeats 3]

Each RUN is a run directory on the embedded data (e.g. a sweep's ``dense``, ``supermask-0.95`` and
``supermask-0.991`` cells); its pruned checkpoint is used when it has one. The dense and the sparse model decode the
same encoder inputs (features prepared once, excluded); time is the best of ``--repeats``. Target: at batch ≥ 16 the
sparse path is never slower than dense (× ≥ 1.00), since ``sparsify`` keeps the dense product for a layer whose CSR
product would be slower at that many rows.
"""

from __future__ import annotations

import argparse
import copy
import os
from functools import partial
from pathlib import Path

import torch
from timing import best_of  # benchmarks/timing.py (scripts run from benchmarks/)

from sparsecap_engine.checkpoint.model_io import load_model
from sparsecap_engine.checkpoint.source import checkpoint_file
from sparsecap_engine.checkpoint.sparse_infer import pruned_sparsity, sparsify
from sparsecap_engine.data.captions import CaptionSet, load_records
from sparsecap_engine.decoding.api import DecodeOptions, caption_images
from sparsecap_engine.runs import RunDir
from sparsecap_engine.training.setup import dataset_path, open_features


def load(run: Path, images: int):
    rd = RunDir.open(run)
    config = rd.load_config()
    model, vocab, _ = load_model(checkpoint_file(rd.path, "auto"))
    model.eval()
    root = Path(config.data.image_root) if config.data.image_root else None
    test = [r for r in load_records(dataset_path(config.data), root, config.data.use_raw) if r.split == "test"]
    features = open_features(config.data, dataset_path(config.data))
    data = CaptionSet.build(test[:images], vocab, config.data.max_len, config.data.image_size, features=features)
    return model, vocab, data, config.data.max_len


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--batch", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--beam", nargs="+", type=int, default=[1, 3])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; best of {args.repeats}; images/s, dense vs sparse (CSR) of the "
          "same weights")
    print(f"{'run':<18}{'sparsity':>9}{'decode':>8}{'batch':>6}{'threads':>8}{'dense':>9}{'sparse':>9}{'×':>7}"
          f"{'CSR layers':>11}")
    worst: float | None = None
    for run in args.runs:
        dense, vocab, data, max_len = load(run, args.images)
        sparse = copy.deepcopy(dense)
        report = sparsify(sparse)
        s = pruned_sparsity(dense)
        every = range(len(data))
        for beam in args.beam:
            opts = DecodeOptions(max_len=max_len) if beam == 1 else DecodeOptions(method="beam", beam_size=beam,
                                                                                  max_len=max_len)
            for batch in args.batch:
                for threads in args.threads:
                    torch.set_num_threads(threads)
                    times = []
                    for model in (dense, sparse):
                        run_all = partial(caption_images, model, data, every, vocab, opts, batch_size=batch)
                        caption_images(model, data, range(min(batch, len(data))), vocab, opts, batch_size=batch)
                        t, _ = best_of(args.repeats, run_all)
                        times.append(t)
                    ratio = times[0] / times[1]
                    if batch >= 16 and report.converted:
                        worst = ratio if worst is None else min(worst, ratio)
                    print(f"{run.name:<18}{s:>9.2%}{'greedy' if beam == 1 else f'beam{beam}':>8}{batch:>6}"
                          f"{threads:>8}{len(data) / times[0]:>9.1f}{len(data) / times[1]:>9.1f}{ratio:>6.2f}×"
                          f"{len(report.converted):>11}", flush=True)
    if worst is not None:
        verdict = "ok" if worst >= 1.0 else "MISSED"
        print(f"worst sparse/dense speed at batch ≥ 16: {worst:.2f}× (target ≥ 1.00×): {verdict}")


if __name__ == "__main__":
    main()
