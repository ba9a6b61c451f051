"""How fast does ``sparsecap monitor`` open a long run? Target: a 100,000-event log opens in under 2 s.

Writes a synthetic run (train events every step, validation/samples/sparsity/checkpoint every 500 steps, 60 pruned
tensors) and reports: the time to fold the log (engine only), the ``--once`` text and ``--json`` summaries, and the time
from starting the Textual app to its first frame with the data drawn (headless, 120×40).

    python benchmarks/bench_monitor.py [--events 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sparsecap_engine.config import RunConfig, to_toml
from sparsecap_engine.monitor_state import load_state


def write_log(run: Path, n_events: int, val_every: int = 500) -> int:
    """Write ``run/events.jsonl`` with about ``n_events`` events; returns the number written."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "checkpoints").mkdir(exist_ok=True)
    cfg = RunConfig()
    per_val = 4  # val, samples, sparsity, checkpoint
    steps = int(n_events / (1 + per_val / val_every))
    cfg.train.steps, cfg.train.log_every = steps, 1
    cfg.prune = {"method": "gradual", "sparsity": 0.95}
    (run / "config.toml").write_text(to_toml(cfg.to_dict()))
    layers = [f"decoder.layers.{i // 6}.{n}.weight" for i, n in enumerate(["q", "k", "v", "o", "fc1", "fc2"] * 10)]
    t0 = 1.7e9
    written = 0
    with (run / "events.jsonl").open("w") as f:

        def emit(kind: str, step: int, t: float, **fields: object) -> None:
            nonlocal written
            f.write(json.dumps({"kind": kind, "time": t, "step": step, **fields}) + "\n")
            written += 1

        emit(
            "run_start",
            0,
            t0,
            config=cfg.to_dict(),
            model={"name": "transformer"},
            device="cpu",
            params=55_000_000,
            train_images=113_287,
        )
        step = 0
        while written < n_events:
            step += 1
            t = t0 + step * 0.05
            emit(
                "train",
                step,
                t,
                epoch=step / 3540,
                loss=3 * math.exp(-step / 20000) + 1.5 + 0.1 * math.sin(step),
                lr=5e-4 * (1 + math.cos(math.pi * step / steps)) / 2,
                items_per_s=640.0,
            )
            if step % val_every == 0 and written + per_val <= n_events:
                frac = min(1.0, step / (0.8 * steps))
                emit("val", step, t, metrics={"CIDEr-D": 0.5 + 0.6 * frac, "BLEU-4": 0.2 + 0.15 * frac})
                emit(
                    "samples",
                    step,
                    t,
                    items=[
                        {
                            "image": f"/data/img{i}.jpg",
                            "image_id": i,
                            "caption": "a man riding a horse",
                            "refs": ["a horse"],
                        }
                        for i in range(4)
                    ],
                )
                emit(
                    "sparsity",
                    step,
                    t,
                    overall=0.95 * frac,
                    target=0.95,
                    layers={name: 0.95 * frac * (0.9 + 0.002 * i) for i, name in enumerate(layers)},
                )
                emit("checkpoint", step, t, path=str(run / "checkpoints" / "last.safetensors"), best=True)
    return written


def time_open(run: Path, size: tuple[int, int] = (120, 40)) -> tuple[float, str]:
    """Seconds from creating the app to its first frame with the last step drawn; and the status line's text."""
    from sparsecap_cli.tui.app import MonitorApp
    from sparsecap_cli.tui.widgets import StatusLine

    out: dict[str, object] = {}

    async def pilot_fn(pilot) -> None:  # noqa: ANN001 - textual Pilot
        await pilot.pause()
        out["t"] = time.perf_counter()
        out["status"] = str(pilot.app.screen.query_one(StatusLine).render())
        pilot.app.exit()

    t0 = time.perf_counter()
    MonitorApp(run, "run").run(headless=True, size=size, auto_pilot=pilot_fn)
    return float(out["t"]) - t0, str(out["status"])  # type: ignore[arg-type]


def time_cli_open(run: Path, needle: str, timeout: float = 60.0) -> float | None:
    """Seconds from starting ``python -m sparsecap_cli.main monitor RUN`` in a pseudo-terminal until ``needle`` is
    drawn (imports, CLI start-up and the first frame included); None where pty is unavailable."""
    try:
        import os
        import pty
        import select
    except ImportError:
        return None
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI in a 120×40 terminal
        os.environ.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
        os.execv(sys.executable, [sys.executable, "-m", "sparsecap_cli.main", "monitor", str(run)])
    out, seen = b"", None
    while time.perf_counter() - t0 < timeout:
        if select.select([fd], [], [], 0.02)[0]:
            try:
                out += os.read(fd, 1 << 20)
            except OSError:
                break
            if seen is None and needle.encode() in out:
                seen = time.perf_counter() - t0
                os.write(fd, b"q")
        if os.waitpid(pid, os.WNOHANG)[0]:
            break
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the run here and keep it")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    run = (args.keep or tmp) / "bench-run"
    try:
        t = time.perf_counter()
        n = write_log(run, args.events)
        size_mb = (run / "events.jsonl").stat().st_size / 1e6
        print(f"wrote {n:,} events ({size_mb:.1f} MB) in {time.perf_counter() - t:.2f} s")

        t = time.perf_counter()
        state = load_state(run)
        fold = time.perf_counter() - t
        layers = len(state.sparsity.layers) if state.sparsity else 0
        print(
            f"fold (engine)        {fold:6.3f} s   {state.events:,} events, step {state.step:,}, "
            f"{len(state.curves['loss']):,} loss points, {layers} layers"
        )

        from sparsecap_cli.tui.text import render_snapshot

        t = time.perf_counter()
        render_snapshot(load_state(run))
        print(f"--once text          {time.perf_counter() - t:6.3f} s")
        t = time.perf_counter()
        json.dumps(load_state(run).to_dict())
        print(f"--json summary       {time.perf_counter() - t:6.3f} s")

        seconds, status = time_open(run)
        ok = f"{state.step:,}" in status
        verdict = "PASS" if seconds < 2.0 and ok else "FAIL"
        print(
            f"open TUI (headless)  {seconds:6.3f} s   first frame shows step {state.step:,}: {ok}   "
            f"target < 2 s: {verdict}"
        )
        cli = time_cli_open(run, f"{state.step:,}")
        if cli is not None:
            print(
                f"sparsecap monitor    {cli:6.3f} s   process start → first frame in a pty (Python start-up and every "
                "CLI import included)"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
