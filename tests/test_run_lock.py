"""One writer per run directory: ``RunDir.create`` and every job that writes a run hold ``<run>/.lock`` (flock) for
their lifetime; a second process is refused, naming the holder; a killed holder frees the run at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sparsecap_engine.errors import RunError
from sparsecap_engine.runs import RunDir

EXE = str(Path(sys.executable).parent / "sparsecap")


def _holder(path: Path, hold_s: float = 60.0) -> subprocess.Popen:
    """Another process that creates the run at ``path`` and holds it until killed (or ``hold_s``)."""
    code = textwrap.dedent(f"""
        import sys, time
        from sparsecap_engine.runs import RunDir
        try:
            RunDir.create({str(path)!r})
        except Exception as e:
            print("refused:", e, flush=True)
            sys.exit(3)
        print("holding", flush=True)
        time.sleep({hold_s})
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_second_process_is_refused_and_told_who_holds_the_run(tmp_path: Path):
    path = tmp_path / "runs" / "r"
    holder = _holder(path)
    try:
        assert holder.stdout.readline().strip() == "holding"
        for attempt in (lambda: RunDir.create(path), lambda: RunDir.create(path, overwrite=True),
                        lambda: RunDir(path).lock()):
            with pytest.raises(RunError, match=f"in use by pid {holder.pid} "):
                attempt()
        # --overwrite cleared nothing of the holder's run
        assert sorted(p.name for p in path.iterdir()) == [".lock", "checkpoints", "plots"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    run = RunDir.create(path, overwrite=True)  # kill -9 of the holder freed the run: the kernel drops its flock
    run.lock()  # and this process may take its own run again (a resume in the same process)
    assert f"pid {os.getpid()}" in (path / ".lock").read_text()


def test_concurrent_creates_of_one_run_leave_exactly_one_owner(tmp_path: Path):
    path = tmp_path / "r"
    procs = [_holder(path, hold_s=3.0) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert sum(out.startswith("holding") for out in outs) == 1, outs
    assert all(out.startswith(("holding", "refused:")) for out in outs), outs


@pytest.mark.slow
def test_resume_of_a_run_in_use_is_refused_through_the_executable(tmp_path: Path):
    """Two concurrent ``--resume`` of one run both completed, interleaving their events: the second is now refused
    in one line naming the first, and the run's files are untouched."""
    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    made = subprocess.run([EXE, "train", "--runs-root", str(runs), "--name", "r", "--steps", "1", "--val-every", "1",
                           "--batch-size", "2", "--device", "cpu", "--quiet", "--set", "train.val_images=2",
                           "--set", "data.image_size=32", "--set", "model.rnn_size=16",
                           "--set", "model.input_encoding_size=8", "--set", "model.att_hid_size=8",
                           "--set", 'model.encoder_args={"channels": [4]}'],
                          capture_output=True, text=True, env=env, timeout=600)
    assert made.returncode == 0, made.stderr
    before = (runs / "r" / "events.jsonl").read_text()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from sparsecap_engine.runs import RunDir
        RunDir.open({str(runs / "r")!r}).lock()
        print("holding", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        for command in ("train", "prune"):
            res = subprocess.run([EXE, command, "--resume", "--name", "r", "--runs-root", str(runs), "--quiet"],
                                 capture_output=True, text=True, env=env, timeout=600)
            lines = [line for line in res.stderr.splitlines() if line.strip()]
            if command == "prune":  # a dense run is not a pruning run: that is said first
                assert res.returncode != 0 and "not a pruning run" in lines[0], res.stderr
                continue
            assert res.returncode != 0 and len(lines) == 1, res.stderr
            assert f"in use by pid {holder.pid}" in lines[0], lines
    finally:
        holder.kill()
        holder.wait()
    assert (runs / "r" / "events.jsonl").read_text() == before
