"""How decoding cost grows with sparsity: greedy caption time (batch 1, encoder included) of each model family at
sparsities from 0 to 99.5 %, sparse (CSR) against dense, side by side in one run, and one plot with a dense line per
model so the crossover (where sparse kernels start to pay) is visible.

    OMP_NUM_THREADS=1 python benchmarks/bench_sparsity_curve.py [--models ud-paper transformer-paper ort-paper
        acort-base] [--sparsity 0 0.5 0.7 0.8 0.9 0.95 0.975 0.99 0.995] [--threads 1] [--repeats 5]
        [--max-len 16] [--beam 1] [--out benchmarks/plots/sparsity_curve.png]

Models have random weights and a random mask at each sparsity on every prunable matrix (as bench_sparse.py). The
sparse model is ``sparsify(model, min_sparsity=0.9·s)``: every pruned layer in CSR, whatever its sparsity, so the plot
shows what CSR costs below the crossover (``sparsecap caption --sparse auto`` converts only layers ≥ 70 % zeros and
turns on at ≥ 80 %). Times: median of ``--repeats``, ms per caption. ``--beam K`` (K > 1) times beam search of width
K instead of greedy decoding (the same ``max_len``; a beam ends early only if every beam writes ``<eos>``).
"""

from __future__ import annotations

import argparse
import copy
import os
from functools import partial
from pathlib import Path

import torch
from bench_sparse import V, apply_random_masks  # benchmarks/bench_sparse.py (scripts run from benchmarks/)

from sparsecap_engine.checkpoint.sparse_infer import example_batch, greedy_ids, sparsify, time_ms
from sparsecap_engine.models.registry import build_model, preset

DEFAULT_SPARSITY = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995)


@torch.no_grad()
def beam_ids(model: torch.nn.Module, batch: dict[str, torch.Tensor], max_len: int, beam: int) -> object:
    """Beam search of width ``beam`` for one image, encoder included (ids as ``greedy_ids``: bos 2, eos 3, pad 0)."""
    from sparsecap_engine.decoding.beam import beam_search

    return beam_search(model, model.encode(batch), bos=2, eos=3, pad=0, max_len=max_len, beam_size=beam)


def curve(name: str, sparsities: list[float], max_len: int, repeats: int,
          beam: int = 1) -> tuple[float, list[tuple[float, float]]]:
    """(dense ms, [(sparsity, sparse ms)]) for one preset; the dense time does not depend on the values."""
    torch.manual_seed(0)
    base = build_model(preset(name), V).eval()
    batch = example_batch(base)
    decode = greedy_ids if beam == 1 else partial(beam_ids, beam=beam)
    dense_ms = time_ms(partial(decode, base, batch, max_len), repeats)
    points = []
    for s in sparsities:
        model = copy.deepcopy(base)
        achieved = apply_random_masks(model, s)
        sparsify(model, min_sparsity=0.9 * achieved)  # the pruned layers (≈ s zeros each), not the unpruned ones
        points.append((achieved, time_ms(partial(decode, model, batch, max_len), repeats)))
        print(f"{name:<18}{achieved:>8.2%}{dense_ms:>10.1f}{points[-1][1]:>10.1f}{dense_ms / points[-1][1]:>8.2f}×",
              flush=True)
    return dense_ms, points


def plot(results: dict[str, tuple[float, list[tuple[float, float]]]], out: Path, threads: int,
         decoding: str = "greedy") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (name, (dense, points)) in enumerate(results.items()):
        color = f"C{i}"
        xs = [100 * s for s, _ in points]
        ax.plot(xs, [ms for _, ms in points], "o-", color=color, label=f"{name} sparse (CSR)")
        ax.axhline(dense, color=color, linestyle="--", linewidth=1, label=f"{name} dense")
    ax.set_xlabel("sparsity of the pruned weights (%)")
    ax.set_ylabel(f"ms per caption ({decoding}, batch 1, encoder included)")
    ax.set_yscale("log")
    ax.set_title(f"Decode time vs sparsity, {threads} thread(s): below a dashed line, sparse wins")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"plot: {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["ud-paper", "transformer-paper", "ort-paper", "acort-base"])
    ap.add_argument("--sparsity", nargs="+", type=float, default=list(DEFAULT_SPARSITY))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-len", type=int, default=16)
    ap.add_argument("--beam", type=int, default=1, help="beam width (1: greedy)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "plots" / "sparsity_curve.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    decoding = "greedy" if args.beam == 1 else f"beam {args.beam}"
    print(f"load average {os.getloadavg()[0]:.2f}; {args.threads} thread(s); {decoding}; median of {args.repeats}")
    print(f"{'model':<18}{'sparsity':>8}{'dense ms':>10}{'sparse ms':>10}{'×':>9}")
    results = {name: curve(name, args.sparsity, args.max_len, args.repeats, args.beam) for name in args.models}
    print("crossover (lowest sparsity where sparse ≤ dense):")
    for name, (dense, points) in results.items():
        wins = [s for s, ms in points if ms <= dense]
        print(f"  {name:<18}{'%.1f%%' % (100 * min(wins)) if wins else 'never in this range'}")
    plot(results, args.out, args.threads, decoding)


if __name__ == "__main__":
    main()
