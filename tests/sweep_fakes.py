"""A fake ``sparsecap`` for sweep tests: ``train``, ``prune`` and ``sweep-measure`` write what the real commands leave
in a run directory (config, events with run_end, checkpoints, sparsity.json, export/measure.json) in milliseconds.

Steered by the environment: ``FAKE_CALLS`` (append one JSON line per call: argv and thread env), ``FAKE_FAIL`` (comma
list of run names whose command fails with ``error: boom <name>``), ``FAKE_MISS`` (runs that end ``target-missed``
with exit code 1), ``FAKE_UNREACHED`` (runs that end ``completed`` with ``reached: false``), ``FAKE_HANG`` (runs that
wait for SIGINT, then end ``interrupted``), ``FAKE_FAIL_MEASURE`` (runs whose measuring fails).
Run as a script (no sparsecap import: it must start fast)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import tomllib
from pathlib import Path


def _opt(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def _names(var: str) -> set[str]:
    return {n for n in os.environ.get(var, "").split(",") if n}


def _event(path: Path, kind: str, **fields) -> None:
    with path.open("a") as f:
        f.write(json.dumps({"kind": kind, "time": time.time(), "step": fields.pop("step", 0), **fields}) + "\n")


def _run(cmd: str, argv: list[str]) -> int:
    name, root = _opt(argv, "--name"), Path(_opt(argv, "--runs-root", "runs"))
    run = root / name
    resume, overwrite = "--resume" in argv, "--overwrite" in argv
    if run.is_dir() and any(run.iterdir()) and not (resume or overwrite):
        print(f"error: run directory already exists and is not empty: {run}", file=sys.stderr)
        return 1
    if name in _names("FAKE_FAIL"):
        print("some progress output")
        print(f"error: boom {name}", file=sys.stderr)
        return 1
    if overwrite and (run / "events.jsonl").exists():
        (run / "events.jsonl").unlink()
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    if not resume:
        (run / "config.toml").write_text(Path(_opt(argv, "--config")).read_text())
    events = run / "events.jsonl"
    _event(events, "run_start")
    status, code, message = "completed", 0, ""
    if name in _names("FAKE_HANG"):
        stop = []
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        (run / "checkpoints" / "last.state.pt").write_bytes(b"state")
        deadline = time.time() + 60
        while not stop and time.time() < deadline:
            time.sleep(0.05)
        status, message = "interrupted", "interrupted (Ctrl-C); last checkpoint saved"
    for which in ("last", "best"):
        (run / "checkpoints" / f"{which}.safetensors").write_bytes(b"weights")
    (run / "checkpoints" / "last.state.pt").write_bytes(b"state")
    if cmd == "prune":
        prune = tomllib.loads((run / "config.toml").read_text()).get("prune", {})  # prune --resume: the run's own
        target = float(_opt(argv, "--sparsity") or prune["sparsity"])
        reached = target
        if name in _names("FAKE_MISS"):
            reached, status, code = target / 2, "target-missed", 1
            message = f"target sparsity {target:.2%} missed: reached {reached:.2%}"
        elif name in _names("FAKE_UNREACHED"):  # how prune reported a miss before run_end had target-missed
            reached = target / 2
        tensors = {f"layer{i}.weight": {"shape": [10, 10], "numel": 100, "nnz": round(100 * (1 - reached)),
                                        "sparsity": reached * (0.8 + 0.1 * i), "pruned": True} for i in range(3)}
        numel = 300
        nnz = round(numel * (1 - reached))
        report = {"method": _opt(argv, "--method") or prune.get("method"), "target": target,
                  "reached": reached == target, "tensors": tensors,
                  "pruned": {"numel": numel, "nnz": nnz, "sparsity": 1 - nnz / numel}}
        (run / "sparsity.json").write_text(json.dumps(report))
    _event(events, "run_end", status=status, message=message)
    if code:
        print(f"error: {message}", file=sys.stderr)
    return code


def _measure(argv: list[str]) -> int:
    run = Path(argv[1])
    if run.name in _names("FAKE_FAIL_MEASURE"):
        print("error: measure boom", file=sys.stderr)
        return 1
    s = json.loads((run / "sparsity.json").read_text())["pruned"]["sparsity"] if (run / "sparsity.json").exists() else 0
    out = run / "export"
    out.mkdir(exist_ok=True)
    data = {"scores": {"CIDEr": 1.0 - s / 2, "Bleu_4": 0.3, "METEOR": 0.25, "ROUGE_L": 0.5},
            "size_bytes": int(1000 * (1 - s)) + 100, "latency_ms": 10.0 * (1 - s) + 1.0,
            "prunable": {"numel": 300, "nnz": 300}}
    (out / "measure.json").write_text(json.dumps(data))
    return 0


def main(argv: list[str]) -> int:
    calls = os.environ.get("FAKE_CALLS")
    if calls:
        with open(calls, "a") as f:
            f.write(json.dumps({"argv": argv, "omp": os.environ.get("OMP_NUM_THREADS"),
                                "mkl": os.environ.get("MKL_NUM_THREADS")}) + "\n")
    cmd = argv[0]
    if cmd in ("train", "prune"):
        return _run(cmd, argv)
    if cmd == "sweep-measure":
        return _measure(argv)
    print(f"error: fake sparsecap has no command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
