"""Sparse checkpoint sizes against the entropy bound, for the paper-size Up-Down model (issue 16, item 4).

    OMP_NUM_THREADS=1 python benchmarks/bench_checkpoint_size.py [--model ud-paper] [--sparsity 0.95 0.991]
                                                                 [--masks magnitude|random]

The model is the ``ud-paper`` preset (V = 10001, its own random initialisation, seed 0), pruned by global magnitude
(``pruning.criteria.select("blind")``, every prunable weight) — or by a random mask of the same sparsity in every
prunable tensor with ``--masks random`` (what ``bench_sparse.py`` does). On the untrained model global magnitude
keeps mostly the word embedding (its initial weights are far larger than the other layers') and, at 99.1 %, nothing
else: the printout names the emptied tensors; ``--masks random`` spreads the non-zeros over every layer as a trained
run does. Each file is packed in memory exactly as ``sparsecap export`` writes it (header with the model config and
the 10001-word vocabulary included).

Printed per sparsity: the file size (MB = 10⁶ B) with ``fp32`` / ``fp16`` (exact) and ``int8`` values (per-row
scales), how many pruned tensors got each storage kind, and the entropy bound: ``log2 C(n, k)`` bits for the positions
of each pruned tensor (n elements, k non-zeros) plus 8 bits per non-zero value. ``int8 / bound`` is the whole file over
that bound; the breakdown by part shows what the bound does not count (unpruned tensors in fp16, the int8 scales,
the JSON header with the vocabulary). ``fp16 v1-kinds`` is the fp16 file with the version-1 index codings only
(bitmask / CSR), i.e. before the Rice-coded gaps.
Target: ud-paper at 99.1 % with int8 values ≤ 1.5 MB.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter

import torch

from sparsecap_engine.checkpoint.sparse import SEP, encode_state, pack_sparse
from sparsecap_engine.models.registry import build_model, preset
from sparsecap_engine.pruning.criteria import select
from sparsecap_engine.pruning.scope import prunable
from sparsecap_engine.text.vocab import Vocab

V = 10001
MB = 1e6
TARGET = 1.5e6
V1_KINDS = ("bitmask", "csr")
#: the role of each stored part in the size breakdown
PART_ROLE = {"values": "values", "scale": "int8 scales", "q": "positions", "r": "positions", "bits": "positions",
             "crow": "positions", "col": "positions", "dense": "unpruned tensors"}


def log2_binomial(n: int, k: int) -> float:
    """log2 C(n, k): the bits needed to name which k of n positions are non-zero (all masks equally likely)."""
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def prune(model: torch.nn.Module, sparsity: float, masks: str, seed: int = 0) -> list[str]:
    """Zero the pruned weights in place: global magnitude over every prunable weight, or random per tensor; returns
    the tensors left without a single weight."""
    params = {n: getattr(m, p) for n, (m, p) in prunable(model).items()}
    with torch.no_grad():
        if masks == "magnitude":
            keep = select("blind", {n: w.detach() for n, w in params.items()}, sparsity).masks
        else:
            g = torch.Generator().manual_seed(seed)
            keep = {n: torch.rand(w.shape, generator=g) >= sparsity for n, w in params.items()}
        for n, w in params.items():
            w.mul_(keep[n])
    return [n for n, w in params.items() if not bool(w.any())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ud-paper")
    ap.add_argument("--sparsity", nargs="+", type=float, default=[0.95, 0.991])
    ap.add_argument("--masks", choices=("magnitude", "random"), default="magnitude")
    args = ap.parse_args()
    vocab = Vocab([f"w{i}" for i in range(V - 4)])  # + 4 specials = V
    results = []
    for s in args.sparsity:
        torch.manual_seed(0)
        model = build_model(preset(args.model), len(vocab)).eval()
        emptied = prune(model, s, args.masks)
        names = sorted(prunable(model))
        state = model.state_dict()
        meta = {"model": model.config, "vocab": vocab.to_json(), "encoder": model.config.get("encoder")}
        numel = sum(state[n].numel() for n in names)
        nnz = sum(int((state[n] != 0).sum()) for n in names)
        pos_bits = sum(log2_binomial(state[n].numel(), int((state[n] != 0).sum())) for n in names)
        bound = pos_bits / 8 + nnz  # positions at the entropy bound + 8-bit values
        row = {"sparsity": 1 - nnz / numel, "nnz": nnz, "pos_bound": pos_bits / 8, "bound": bound}
        for values in ("fp32", "fp16", "int8"):
            t0 = time.perf_counter()
            data, full = pack_sparse(state, meta, values, pruned=names)
            row[values] = len(data)
            row[f"{values}_s"] = time.perf_counter() - t0
            row[f"{values}_kinds"] = Counter(e["kind"] for e in full["storage"].values() if e.get("pruned"))
        row["fp16_v1"] = len(pack_sparse(state, meta, "fp16", pruned=names, kinds=V1_KINDS)[0])
        # where the int8 file's bytes go: the tensors by part, the rest is the JSON header
        tensors, storage, _ = encode_state(state, "int8", names)
        parts = Counter()
        for key, t in tensors.items():
            part = key.rsplit(SEP, 1)[1] if SEP in key else "dense"
            parts[PART_ROLE.get(part, part)] += t.numel() * t.element_size()
        parts["header"] = row["int8"] - sum(parts.values())
        row["int8_parts"] = parts
        row["int8_zeroed"] = sum(e.get("zeroed", 0) for e in storage.values())
        results.append(row)
        print(f"--- {args.model}, {args.masks} masks, pruned sparsity {row['sparsity']:.4%} "
              f"({nnz:,} of {numel:,} prunable weights non-zero)", flush=True)
        if emptied:
            print(f"  note: {len(emptied)} of {len(names)} pruned tensors are left empty (an untrained model's "
                  f"magnitudes differ by layer): {', '.join(emptied)}")
        for values in ("fp32", "fp16", "int8"):
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(row[f"{values}_kinds"].items()))
            print(f"  {values}: {row[values] / MB:7.3f} MB   storage of the {len(names)} pruned tensors: {kinds}   "
                  f"(packed in {row[values + '_s']:.1f} s)")
        print(f"  fp16 with version-1 index coding only (bitmask / csr): {row['fp16_v1'] / MB:.3f} MB")
        print(f"  entropy bound: positions {row['pos_bound'] / MB:.3f} MB + values at 8 bits {nnz / MB:.3f} MB = "
              f"{bound / MB:.3f} MB; int8 file / bound = {row['int8'] / bound:.3f}")
        print("  int8 file by part: " + ", ".join(f"{k} {v / MB:.3f} MB" for k, v in parts.most_common())
              + f"; positions / their bound = {parts['positions'] / row['pos_bound']:.3f}; "
              f"{row['int8_zeroed']:,} weights rounded to 0", flush=True)
    print(f"\n{args.model}, {args.masks} masks (MB = 10^6 B)")
    print(" sparsity  fp32 MB  fp16 MB  int8 MB  bound MB  int8/bound  fp16 v1-kinds MB")
    for r in results:
        print(f"{r['sparsity']:9.4%} {r['fp32'] / MB:8.3f} {r['fp16'] / MB:8.3f} {r['int8'] / MB:8.3f} "
              f"{r['bound'] / MB:9.3f} {r['int8'] / r['bound']:11.3f} {r['fp16_v1'] / MB:17.3f}")
    last = results[-1]
    verdict = "meets" if last["int8"] <= TARGET else "misses"
    print(f"int8 at {last['sparsity']:.2%}: {last['int8'] / MB:.3f} MB — {verdict} the ≤ {TARGET / MB:.1f} MB target")


if __name__ == "__main__":
    main()
