"""File sizes in every format and greedy caption latency, sparse (CSR) vs dense, for the paper-size models.

    OMP_NUM_THREADS=2 python benchmarks/bench_sparse.py [--models ud-paper ort-paper] [--sparsity 0.95 0.975 ...]
                                                        [--max-len 16] [--repeats 3] [--threads 1 2]

Models are the ``ud-paper`` / ``ort-paper`` presets (V = 10001, random weights, 36 random regions of 2048-d features)
with a random mask at each sparsity on every prunable weight matrix (biases, norms, positional tables are not pruned).

Sizes (MB = 10⁶ B): ``dense32`` / ``dense16`` = our dense safetensors file, fp32 written, fp16 computed as half its
tensor bytes; ``coo32`` / ``coo16`` = ``torch.save`` of the state dict with pruned tensors as torch COO (int64
indices), as the reference did (its ORT files also held the 5000×512 PE table: ``+pe`` columns add it); ``ours32`` /
``ours16`` = the compact sparse file (``sparsecap export``), written. Latency: batch 1, greedy, ``--max-len`` steps
(no early stop), median of ``--repeats``, encoder included. Targets: Up-Down 99.1 % ≤ 2.5 MB with fp16 values,
ORT ≤ 3 MB; sparse ≥ 3× faster than dense at 95 %, ≥ 8× at 99 %.
"""

from __future__ import annotations

import argparse
import copy
import io
import tempfile
from functools import partial
from pathlib import Path

import torch

from sparsecap_engine.checkpoint.model_io import save_model
from sparsecap_engine.checkpoint.sparse import save_sparse
from sparsecap_engine.checkpoint.sparse_infer import example_batch, greedy_ids, sparsify, time_ms
from sparsecap_engine.models.registry import build_model, preset
from sparsecap_engine.pruning.scope import prunable
from sparsecap_engine.text.vocab import Vocab

V = 10001
PE_BYTES_FP32 = 5000 * 512 * 4


def coo_bytes(state: dict[str, torch.Tensor], pruned: set[str], half: bool) -> int:
    """Size of ``torch.save`` of the state dict with pruned tensors as COO (what the reference shipped)."""
    out = {}
    for name, t in state.items():
        t = t.half() if half and t.is_floating_point() else t
        out[name] = t.to_sparse() if name in pruned else t
    buf = io.BytesIO()
    torch.save(out, buf)
    return buf.tell()


def apply_random_masks(model: torch.nn.Module, sparsity: float, seed: int = 0) -> float:
    """Zero a random ``sparsity`` share of every prunable weight; returns the achieved pruned sparsity."""
    g = torch.Generator().manual_seed(seed)
    zeros = total = 0
    with torch.no_grad():
        for module, pname in prunable(model).values():
            w = getattr(module, pname)
            keep = torch.rand(w.shape, generator=g) >= sparsity
            w.mul_(keep)
            zeros += int((~keep).sum())
            total += w.numel()
    return zeros / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["ud-paper", "ort-paper"])
    ap.add_argument("--sparsity", nargs="+", type=float, default=[0.95, 0.975, 0.9875, 0.991])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--max-len", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    vocab = Vocab([f"w{i}" for i in range(V - 4)])  # + 4 specials = V
    tmp = Path(tempfile.mkdtemp(prefix="bench_sparse_"))
    mb = 1e6
    header = (f"{'model':<10}{'sparsity':>9}{'NNZ':>10}{'dense32':>9}{'dense16':>9}{'coo32':>8}{'coo16':>8}"
              f"{'coo16+pe':>9}{'ours32':>8}{'ours16':>8}  " + "  ".join(
                  f"{'dense' + str(t) + 't':>9}{'sparse' + str(t) + 't':>9}{'×':>6}" for t in args.threads))
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        base = build_model(preset(name), len(vocab)).eval()
        assert base.config["vocab_size"] == V, base.config["vocab_size"]
        batch = example_batch(base)
        dense_ms: dict[int, float] = {}
        for s in args.sparsity:
            model = copy.deepcopy(base)
            achieved = apply_random_masks(model, s)
            names = set(prunable(model))
            state = model.state_dict()
            nnz = sum(int((state[n] != 0).sum()) for n in names)
            save_model(tmp / "dense.safetensors", model, vocab)
            dense32 = (tmp / "dense.safetensors").stat().st_size
            dense16 = sum(t.numel() * (2 if t.is_floating_point() else t.element_size()) for t in state.values())
            coo32, coo16 = coo_bytes(state, names, False), coo_bytes(state, names, True)
            pe16 = PE_BYTES_FP32 // 2 if name.startswith(("ort", "transformer")) else 0
            meta = {"model": model.config, "vocab": vocab.to_json(), "encoder": model.config.get("encoder")}
            ours = {}
            for values in ("fp32", "fp16"):
                save_sparse(tmp / f"sparse-{values}.safetensors", state, meta, values, pruned=sorted(names))
                ours[values] = (tmp / f"sparse-{values}.safetensors").stat().st_size
            sparse_model = copy.deepcopy(model)
            sparsify(sparse_model)
            lat = []
            for t in args.threads:
                torch.set_num_threads(t)
                if t not in dense_ms:  # dense time does not depend on the values: measured once per model
                    dense_ms[t] = time_ms(partial(greedy_ids, model, batch, args.max_len), args.repeats)
                sparse_ms = time_ms(partial(greedy_ids, sparse_model, batch, args.max_len), args.repeats)
                lat.append((dense_ms[t], sparse_ms, dense_ms[t] / sparse_ms))
            row = (f"{name:<10}{achieved:>9.4f}{nnz / 1e6:>9.2f}M{dense32 / mb:>9.1f}{dense16 / mb:>9.1f}"
                   f"{coo32 / mb:>8.2f}{coo16 / mb:>8.2f}{(coo16 + pe16) / mb:>9.2f}{ours['fp32'] / mb:>8.2f}"
                   f"{ours['fp16'] / mb:>8.2f}  " + "  ".join(f"{d:>8.0f}m{sp:>8.1f}m{x:>5.1f}×" for d, sp, x in lat))
            rows.append(row)
            print(row if len(rows) > 1 else f"{header}\n{row}", flush=True)
    print("\nsizes in MB (10^6 B); latency in ms, greedy, batch 1, "
          f"{args.max_len} steps, median of {args.repeats}; × = dense / sparse")


if __name__ == "__main__":
    main()
