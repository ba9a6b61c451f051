"""A run whose process died must not show "running" forever (issue 15, item 9): the monitor looks up the process
that holds the run's lock (pid and host, written by the real lock) and calls a run with no ``run_end`` ``crashed``
when it is gone, ``stale`` when it runs elsewhere and the log has been silent; start time and duration are listed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from sparsecap_engine.monitor_roots import RunsWatch
from sparsecap_engine.monitor_state import STALE_AFTER_S, RunWatch
from sparsecap_engine.runs import LOCK_NAME, holder_alive, lock_folder, unlock_folder
from tests.monitor_fixtures import write_run


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _unfinished(tmp_path: Path, name: str = "r") -> Path:
    return write_run(tmp_path, name, steps=400, done=250)  # run_start and train events, no run_end


def test_the_lock_names_pid_and_host_and_tells_liveness(tmp_path: Path):
    run = _unfinished(tmp_path)
    assert holder_alive(run) is None  # never locked: cannot tell
    lock_folder(run)
    try:
        text = (run / LOCK_NAME).read_text()
        assert text.startswith(f"pid {os.getpid()} on {socket.gethostname()} (")
        assert holder_alive(run) is True
    finally:
        unlock_folder(run)
    (run / LOCK_NAME).write_text(f"pid {_dead_pid()} on {socket.gethostname()} (sparsecap train, since x)\n")
    assert holder_alive(run) is False
    (run / LOCK_NAME).write_text(f"pid {os.getpid()} on another-host.example (sparsecap train, since x)\n")
    assert holder_alive(run) is None
    (run / LOCK_NAME).write_text(f"pid {os.getpid()} (sparsecap train, since x)\n")  # an older lock: this host
    assert holder_alive(run) is True


def test_a_run_whose_process_died_is_crashed(tmp_path: Path):
    run = _unfinished(tmp_path)
    (run / LOCK_NAME).write_text(f"pid {_dead_pid()} on {socket.gethostname()} (sparsecap train, since x)\n")
    watch = RunWatch(run)
    assert watch.poll()
    assert watch.state.status == "crashed" and "--resume" in watch.state.message


def test_a_live_run_stays_running_and_a_finished_one_keeps_its_status(tmp_path: Path):
    run = _unfinished(tmp_path)
    lock_folder(run)
    try:
        watch = RunWatch(run)
        watch.poll()
        assert watch.state.status == "running"
    finally:
        unlock_folder(run)
    done = write_run(tmp_path, "done", steps=400, done=400)
    (done / LOCK_NAME).write_text(f"pid {_dead_pid()} on {socket.gethostname()} (sparsecap train, since x)\n")
    watch = RunWatch(done)
    watch.poll()
    assert watch.state.status == "completed"  # its process is gone, as it should be


def test_a_silent_run_on_another_host_turns_stale_and_back(tmp_path: Path):
    run = _unfinished(tmp_path)
    (run / LOCK_NAME).write_text("pid 1 on another-host.example (sparsecap train, since x)\n")
    now = [time.time()]
    watch = RunWatch(run, clock=lambda: now[0])
    watch.poll()
    assert watch.state.status == "running"  # its log was just written
    now[0] += STALE_AFTER_S + 60
    assert watch.poll()
    assert watch.state.status == "stale" and "no event for 16 min" in watch.state.message
    with (run / "events.jsonl").open("a") as f:  # it was only slow: a new step
        f.write(json.dumps({"kind": "train", "time": now[0], "step": 251, "loss": 1.0, "lr": 1e-4}) + "\n")
    watch.poll()
    assert watch.state.status == "running"


def test_runs_list_has_start_time_and_duration(tmp_path: Path):
    write_run(tmp_path, "a", steps=400, done=400)
    watch = RunsWatch(tmp_path)
    watch.poll()
    (summary,) = watch.summaries()
    assert summary.started is not None and summary.duration_s is not None and summary.duration_s > 0
    events = [json.loads(line) for line in (tmp_path / "a" / "events.jsonl").read_text().splitlines()]
    assert summary.started == events[0]["time"]
    assert summary.duration_s == events[-1]["time"] - events[0]["time"]
