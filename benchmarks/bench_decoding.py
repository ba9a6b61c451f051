"""Beam-search decoding time against greedy for the same batch of images, and images/s of each, side by side.

    python benchmarks/bench_decoding.py [--run RUN] [--images 64] [--beam 3] [--repeats 3] [--threads 1]

With ``--run`` the run's best model captions the first ``--images`` test images of its dataset (real caption lengths);
without it an untrained Up-Down (``ud-small``) decodes random 64 px images, every caption running to ``--max-len``.
Encoding is done once and excluded: both decoders get the same memory. Each time is the best of ``--repeats`` runs.
Target: beam-3 time ≤ 3.5× greedy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from timing import best_of  # benchmarks/timing.py (scripts run from benchmarks/)

from sparsecap_engine.decoding.api import DecodeOptions, decode_memory


def load(run: Path | None, images: int):
    """(model, vocab, encoder inputs, max_len)."""
    if run is None:
        from sparsecap_engine.models.registry import build_model, preset
        from sparsecap_engine.text.vocab import Vocab

        vocab = Vocab([f"w{i}" for i in range(300)])
        torch.manual_seed(0)
        model = build_model(preset("ud-small"), len(vocab)).eval()
        return model, vocab, {"images": torch.randint(0, 255, (images, 3, 64, 64), dtype=torch.uint8)}, 18

    from sparsecap_engine.checkpoint.model_io import load_model
    from sparsecap_engine.data.captions import CaptionSet, load_records
    from sparsecap_engine.runs import RunDir
    from sparsecap_engine.training.setup import dataset_path, open_features

    rd = RunDir.open(run)
    config = rd.load_config()
    model, vocab, _ = load_model(rd.checkpoint("best"))
    root = Path(config.data.image_root) if config.data.image_root else None
    records = load_records(dataset_path(config.data), root, config.data.use_raw)
    test = [r for r in records if r.split == "test"][:images]
    features = open_features(config.data, dataset_path(config.data))
    data = CaptionSet.build(test, vocab, config.data.max_len, config.data.image_size, features=features)
    return model, vocab, data.image_batch(list(range(len(test)))), config.data.max_len


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="A trained run (default: untrained ud-small).")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=0, help="0 = the run's data.max_len (18).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, vocab, batch, max_len = load(args.run, args.images)
    max_len = args.max_len or max_len
    with torch.no_grad():
        memory = model.encode(batch)
        n = next(iter(memory.values())).shape[0]
        rows = []
        for label, opts in (
            ("greedy", DecodeOptions(max_len=max_len)),
            (f"beam-{args.beam}", DecodeOptions(method="beam", beam_size=args.beam, max_len=max_len)),
        ):
            decode_memory(model, memory, vocab, opts)  # warm-up
            t, seqs = best_of(args.repeats, lambda o=opts: decode_memory(model, memory, vocab, o))
            length = float((seqs != vocab.pad_id).sum(1).float().mean())
            rows.append((label, t, n / t, length))
    src = str(args.run) if args.run else "untrained ud-small, random images"
    print(f"{n} images ({src}); max_len {max_len}; {args.threads} thread(s); best of {args.repeats}")
    print(f"{'decoder':<10} {'time (s)':>10} {'images/s':>10} {'mean tokens':>12} {'× greedy':>9}")
    for label, t, ips, length in rows:
        print(f"{label:<10} {t:>10.4f} {ips:>10.1f} {length:>12.2f} {t / rows[0][1]:>9.2f}")
    ratio = rows[1][1] / rows[0][1]
    print(f"beam-{args.beam} / greedy = {ratio:.2f}× (target ≤ 3.5×): {'ok' if ratio <= 3.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
