"""Our in-process CIDEr-D and BLEU against pycocoevalcap's ``Cider`` and ``Bleu(4)``: same captions, same scores, times.

    python benchmarks/bench_cider.py [--images 5000] [--refs 5] [--repeats 3]

Captions are synthetic and already tokenised (Zipf-distributed words, 8-16 words each), as after the PTB tokenizer.
Each timing is the best of ``--repeats`` runs; the scores of both implementations are compared to 1e-9.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
from typing import Any

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from timing import best_of  # benchmarks/timing.py (scripts run from benchmarks/)

from sparsecap_engine.metrics.bleu import bleu_scores
from sparsecap_engine.metrics.cider import CiderD, compute_cider


def captions(images: int, refs: int, seed: int, vocab: int = 8000) -> tuple[dict[int, list[str]], dict[int, str]]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    weights = [1 / (i + 1) for i in range(vocab)]

    def sentence() -> str:
        return " ".join(rng.choices(words, weights, k=rng.randint(8, 16)))

    return {i: [sentence() for _ in range(refs)] for i in range(images)}, {i: sentence() for i in range(images)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--refs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    refs, hyps = captions(args.images, args.refs, args.seed)
    res = {k: [h] for k, h in hyps.items()}
    print(f"{args.images} captions, {args.refs} references each; best of {args.repeats}")

    t_coco, (c_coco, c_coco_per) = best_of(args.repeats, lambda: Cider().compute_score(refs, res))
    t_ours, (c_ours, c_ours_per) = best_of(args.repeats, lambda: compute_cider(refs, hyps))
    diff = max(abs(c_ours - c_coco), np.abs(np.asarray(list(c_ours_per.values())) - c_coco_per).max())
    print(f"CIDEr-D  pycocoevalcap {t_coco:7.3f} s   ours {t_ours:7.3f} s   speed-up {t_coco / t_ours:6.1f}x", end="")
    print(f"   corpus {c_ours:.6f}, max |diff| {diff:.1e}")

    def coco_bleu() -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            return Bleu(4).compute_score(refs, res)

    t_coco, (b_coco, b_coco_per) = best_of(args.repeats, coco_bleu)
    t_ours, (b_ours, b_ours_per) = best_of(args.repeats, lambda: bleu_scores(refs, hyps))
    diff = max(np.abs(np.subtract(b_ours, b_coco)).max(), np.abs(np.subtract(b_ours_per, b_coco_per)).max())
    print(f"BLEU-1..4 pycocoevalcap {t_coco:6.3f} s   ours {t_ours:7.3f} s   speed-up {t_coco / t_ours:6.1f}x", end="")
    print(f"   BLEU-4 {b_ours[3]:.6f}, max |diff| {diff:.1e}")

    # an SCST step: 10 images x 15 samples, df fixed from all refs (pycocoevalcap has no fixed df: shown for scale)
    scorer = CiderD.from_refs(refs)
    keys = [k for k in range(10) for _ in range(15)]
    samples = [captions(1, 1, seed)[1][0] for seed in range(len(keys))]
    batch_refs = {i: refs[k] for i, k in enumerate(keys)}
    batch_res = {i: [s] for i, s in enumerate(samples)}
    t_coco, _ = best_of(args.repeats, lambda: Cider().compute_score(batch_refs, batch_res))
    t_ours, _ = best_of(args.repeats, lambda: scorer.scores(samples, keys))
    print(f"SCST batch (150 samples) pycocoevalcap {t_coco * 1e3:6.1f} ms   ours {t_ours * 1e3:6.1f} ms")


if __name__ == "__main__":
    main()
