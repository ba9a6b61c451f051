"""Time to first caption (issue 16, item 5): ``sparsecap caption IMAGE --checkpoint FILE`` from process start to the
caption printed, a dense checkpoint vs a 99 %-sparse one (int8 values), paper-size Up-Down and ORT, side by side in
one run (median of ``--repeats``), plus the bundled demo model. Weights are random (magnitude-pruned): the time does
not depend on what the model learnt. Target: ≤ 2 s for the sparse checkpoint on a 2-core CPU.

    python benchmarks/bench_first_caption.py [--models ud-paper ort-paper] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def make_checkpoints(name: str, folder: Path) -> dict[str, Path]:
    from sparsecap_engine.checkpoint.model_io import save_model
    from sparsecap_engine.checkpoint.pruned import save_pruned
    from sparsecap_engine.checkpoint.sparse import export_sparse
    from sparsecap_engine.data.synthetic_features import FEAT_DIM, REGIONS_NAME
    from sparsecap_engine.models.registry import build_model, preset
    from sparsecap_engine.pruning.criteria import select
    from sparsecap_engine.pruning.masks import attach
    from sparsecap_engine.pruning.report import sparsity_report, summary
    from sparsecap_engine.pruning.scope import prunable
    from sparsecap_engine.text.vocab import Vocab

    torch.manual_seed(0)
    cfg = {k: v for k, v in preset(name).items() if k not in ("tokenizer", "radix_base")}
    vocab = Vocab([f"w{i}" for i in range(9997)])  # + 4 specials: the paper's 10,001
    model = build_model(cfg, len(vocab)).eval()
    meta = {"step": 0, "image_size": 64}
    if cfg.get("encoder") == "regions":
        meta["regions"] = REGIONS_NAME  # caption computes the scene's regions from the PNG
        cfg["encoder_args"] = {**cfg.get("encoder_args", {}), "feat_dim": FEAT_DIM}
        model = build_model(cfg, len(vocab)).eval()  # at the scenes' region width (the rest is the paper's size)
    dense = folder / f"{name}-dense.safetensors"
    save_model(dense, model, vocab, **meta)
    weights = {n: getattr(m, p).detach() for n, (m, p) in prunable(model).items()}
    masks = select("blind", weights, 0.99).masks
    attach(model, "hard").set(masks)
    pruned = folder / f"{name}-pruned.safetensors"
    save_pruned(pruned, model, vocab, masks, summary(sparsity_report(model, masks), 0.99, "magnitude"), **meta)
    sparse = folder / f"{name}-99-int8.safetensors"
    export_sparse(pruned, sparse, "int8")
    return {"dense": dense, "sparse 99% int8": sparse}


def time_caption(image: Path, checkpoint: Path | None, repeats: int) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "sparsecap_cli", "caption", str(image), "--device", "cpu"]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    times, out = [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
        out = res.stdout.strip()
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["ud-paper", "ort-paper"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from sparsecap_engine.data.synthetic import render_sample

    with tempfile.TemporaryDirectory(prefix="first-caption-") as tmp:
        folder = Path(tmp)
        image, _ = render_sample(folder / "scene.png", seed=3)
        print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; median of {args.repeats}, process start to "
              "caption printed")
        t, _ = time_caption(image, None, args.repeats)
        print(f"{'bundled demo (ud-small 95% int8)':<34} {t:6.2f} s")
        for name in args.models:
            files = make_checkpoints(name, folder)
            row = {}
            for kind, path in files.items():
                row[kind], _ = time_caption(image, path, args.repeats)
                print(f"{name + ' ' + kind:<34} {row[kind]:6.2f} s  ({path.stat().st_size / 1e6:.2f} MB)")
            print(f"{name}: sparse / dense = {row['sparse 99% int8'] / row['dense']:.2f}×")


if __name__ == "__main__":
    main()
