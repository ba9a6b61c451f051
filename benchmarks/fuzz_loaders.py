"""Fuzz every loader with N seeded mutated inputs each (default 10,000): counts of inputs that loaded, that raised
the project's own error, and that raised anything else (failures, with the first few messages); the slowest input
and the peak memory, so a hang or a runaway allocation shows. Run from the repo root:

    OMP_NUM_THREADS=1 python benchmarks/fuzz_loaders.py [--n 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.loaders import make_targets, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        work = Path(tmp)
        targets = make_targets(work)
        print(f"{'loader':20s} {'inputs':>7s} {'loaded':>7s} {'our error':>9s} {'other':>6s} {'s/input*':>11s}")
        bad = 0
        for target in targets:
            t0, slowest = time.perf_counter(), 0.0
            report = None
            for start in range(0, args.n, 500):  # chunks: the slowest chunk bounds the slowest input
                c0 = time.perf_counter()
                part = run([target], min(500, args.n - start), args.seed * 1_000_003 + start, work)
                slowest = max(slowest, (time.perf_counter() - c0) / max(1, min(500, args.n - start)))
                if report is None:
                    report = part
                else:
                    report.counts.update(part.counts)
                    for k, v in part.failures.items():
                        report.failures.setdefault(k, []).extend(v)
            c = report.counts
            name = target.name
            bad += c[(name, "bad")]
            print(f"{name:20s} {args.n:7d} {c[(name, 'ok')]:7d} {c[(name, 'error')]:9d} {c[(name, 'bad')]:6d} "
                  f"{slowest:11.4f}  ({time.perf_counter() - t0:.0f} s)")
            for line in report.failures.get(name, [])[:5]:
                print(f"    {line}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("* mean of the slowest chunk of 500 inputs")
        print(f"peak memory {peak:.0f} MB; inputs outside the project's error classes: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
