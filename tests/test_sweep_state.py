"""The sweep monitor's engine side: folding plan.json + events.jsonl + results.json (+ the cells' run dirs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsecap_engine.errors import RunError
from sparsecap_engine.monitor_roots import find_runs, list_runs, resolve_monitor_path
from sparsecap_engine.sweep_state import SweepWatch, list_sweeps, load_sweep
from tests.monitor_fixtures import T0, write_run
from tests.sweep_fixtures import (
    DENSE_ROW,
    GRADUAL_95_ROW,
    SMP_95_ROW,
    SMP_975_ROW,
    append,
    plan,
    sweep_event,
    write_results,
    write_sweep,
)

NOW = T0 + 1300.0


def clock() -> float:
    return NOW


def statuses(watch: SweepWatch) -> dict[str, str]:
    return {cid: c.status for cid, c in watch.state.cells.items()}


def new_sweep(tmp_path: Path) -> Path:
    """A sweep that has written its plan and nothing else."""
    sweep = tmp_path / "paper"
    sweep.mkdir(parents=True)
    (sweep / "plan.json").write_text(json.dumps(plan()))
    return sweep


def test_fold_of_a_sweep_halfway(tmp_path: Path) -> None:
    state = load_sweep(write_sweep(tmp_path), clock=clock)
    assert state.name == "paper" and state.status == "running" and state.jobs == 1 and state.launcher == "local"
    assert state.methods == ["dense", "supermask", "gradual", "snip"] and state.sparsity == [0.95, 0.975]
    assert {cid: (c.status, c.message) for cid, c in state.cells.items()} == {
        "dense": ("completed", ""),
        "supermask-0.95": ("completed", ""),
        "supermask-0.975": ("target-missed", "reached 93.1% of target 97.5%"),
        "gradual-0.95": ("failed", "RuntimeError: out of memory"),
        "gradual-0.975": ("running", ""),
        "snip-0.95": ("pending", ""),
        "snip-0.975": ("pending", ""),
    }
    assert state.counts() == {
        "pending": 2,
        "running": 1,
        "completed": 2,
        "target-missed": 1,
        "failed": 1,
        "skipped": 0,
        "interrupted": 0,
    }
    assert state.done == 4
    cells = state.cells
    assert cells["supermask-0.975"].method == "supermask" and cells["supermask-0.975"].target == 0.975
    assert cells["dense"].elapsed_s(NOW) == 300.0 and cells["snip-0.95"].elapsed_s(NOW) is None
    running = cells["gradual-0.975"]
    assert running.elapsed_s(NOW) == pytest.approx(100.0)  # started at T0 + 1200
    assert (running.step, running.total_steps, running.run_status) == (150, 800, "running")  # from its run dir
    # results: the dense row, rows in plan order, CIDEr-vs-sparsity per method at the sparsity reached
    assert state.dense_cider == 0.679
    assert [r["cell"] for r in state.result_rows()] == ["dense", "supermask-0.95", "supermask-0.975"]
    series = state.series()
    assert list(series) == ["supermask", "gradual", "snip"]
    assert [(p.cell, p.sparsity, p.cider) for p in series["supermask"]] == [
        ("supermask-0.975", 0.9312, 0.642),
        ("supermask-0.95", 0.9501, 0.668),
    ]
    assert series["gradual"] == [] and series["snip"] == []
    assert state.x_range() == (0.9312, 0.975)
    assert state.latency_vs_dense(SMP_95_ROW) == pytest.approx(0.41)
    assert state.malformed == 0 and state.unknown == 0


def test_incremental_polls_follow_the_sweep(tmp_path: Path) -> None:
    sweep = new_sweep(tmp_path)
    watch = SweepWatch(sweep, clock=clock)
    assert watch.poll()  # the plan
    assert watch.state.status == "waiting" and set(statuses(watch).values()) == {"pending"}
    assert not watch.poll()  # nothing new

    append(sweep, sweep_event("sweep_start", T0, cells=7, jobs=2, launcher="local"))
    append(sweep, sweep_event("cell_start", T0, cell="dense", action="run"))
    assert watch.poll()
    assert watch.state.status == "running" and statuses(watch)["dense"] == "running"
    assert watch.state.cells["dense"].elapsed_s(NOW) == 1300.0

    line = sweep_event("cell_end", T0 + 300, cell="dense", status="completed", message="", wall_s=301.5)
    append(sweep, line[:25])  # the writer is mid-line: nothing happens yet
    assert not watch.poll()
    assert statuses(watch)["dense"] == "running" and watch.tail.pending == 25
    append(sweep, line[25:])
    assert watch.poll()
    dense = watch.state.cells["dense"]
    assert (dense.status, dense.wall_s, dense.elapsed_s(NOW)) == ("completed", 301.5, 301.5)
    assert watch.state.rows == [] and watch.state.dense_cider is None  # no results.json yet

    write_results(sweep, [DENSE_ROW], DENSE_ROW, T0 + 301)
    assert watch.poll()
    assert watch.state.dense_cider == 0.679 and [r["cell"] for r in watch.state.rows] == ["dense"]
    assert not watch.poll()  # results.json unchanged: not re-read

    append(
        sweep,
        sweep_event("cell_start", T0 + 301, cell="supermask-0.95", action="run"),
        sweep_event("cell_start", T0 + 301, cell="gradual-0.95", action="run"),
        sweep_event("cell_end", T0 + 700, cell="supermask-0.95", status="completed", message="", wall_s=399.0),
    )
    write_results(sweep, [DENSE_ROW, SMP_95_ROW], DENSE_ROW, T0 + 700)
    assert watch.poll()
    assert statuses(watch)["supermask-0.95"] == "completed" and statuses(watch)["gradual-0.95"] == "running"
    assert [(p.sparsity, p.cider) for p in watch.state.series()["supermask"]] == [(0.9501, 0.668)]
    append(sweep, sweep_event("sweep_end", T0 + 710, status="interrupted", done=2, failed=0))
    assert watch.poll()
    assert watch.state.status == "interrupted"
    assert statuses(watch)["gradual-0.95"] == "interrupted"  # the sweep ended under it
    assert watch.state.malformed == 0


def test_incremental_equals_one_fold(tmp_path: Path) -> None:
    """Appends that tear lines anywhere end in the same state as one read of the whole log."""
    full = write_sweep(tmp_path / "a", runs=False)
    data = (full / "events.jsonl").read_text()
    sweep = new_sweep(tmp_path / "b")
    (sweep / "results.json").write_text((full / "results.json").read_text())
    watch = SweepWatch(sweep, clock=clock)
    for cut in range(0, len(data), 37):
        append(sweep, data[cut : cut + 37])
        watch.poll()
    assert {**watch.state.to_dict(NOW), "path": ""} == {**load_sweep(full, clock=clock).to_dict(NOW), "path": ""}


def test_malformed_lines_and_unknown_kinds_are_counted(tmp_path: Path) -> None:
    sweep = new_sweep(tmp_path)
    append(
        sweep,
        "{not json}\n",
        sweep_event("sweep_start", T0, cells=7, jobs=1, launcher="local"),
        sweep_event("cell_start", T0, cell=3),  # not an id: a bad event
        sweep_event("cell_progress", T0, cell="dense"),  # a kind from a later version
        sweep_event("cell_end", T0, status="completed"),  # no cell: a bad event
        sweep_event("cell_start", T0, cell="dense"),
        sweep_event("cell_start", T0, cell="magnitude-0.9"),  # not in the plan (the grid changed)
    )
    state = load_sweep(sweep, clock=clock)
    assert state.cells["dense"].status == "running"
    assert state.unknown == 1 and state.malformed == 3
    extra = state.cells["magnitude-0.9"]  # shown, not lost
    assert (extra.planned, extra.method, extra.target, extra.status) == (False, "magnitude", 0.9, "running")
    assert list(state.cells)[-1] == "magnitude-0.9"


def test_missing_results_json_is_fine(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, runs=False)
    (sweep / "results.json").unlink()
    state = load_sweep(sweep, clock=clock)
    assert state.rows == [] and state.dense_row is None and state.dense_cider is None
    assert state.series() == {"supermask": [], "gradual": [], "snip": []}
    assert state.x_range() == (0.95, 0.975)  # the planned sparsities frame the plot before any result
    assert state.cells["dense"].status == "completed"  # from the events


def test_unreadable_results_keep_the_last_good_copy(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, runs=False)
    watch = SweepWatch(sweep, clock=clock)
    watch.poll()
    assert len(watch.state.rows) == 3
    (sweep / "results.json").write_text('{"cells": [')  # a non-atomic writer, caught mid-write
    assert watch.poll()
    assert len(watch.state.rows) == 3 and watch.state.results_error.startswith("results.json: ")
    write_results(sweep, [DENSE_ROW, SMP_95_ROW, SMP_975_ROW, GRADUAL_95_ROW], DENSE_ROW, T0 + 2000)
    assert watch.poll()
    assert len(watch.state.rows) == 4 and watch.state.results_error == ""
    assert [p.cider for p in watch.state.series()["gradual"]] == [0.601]


def test_rerun_resumes_and_skips(tmp_path: Path) -> None:
    """A rerun appends a new sweep_start: cells the dead sweep left running were interrupted, then resume."""
    sweep = write_sweep(tmp_path, runs=False)
    (sweep / "results.json").unlink()  # the events alone must say it
    watch = SweepWatch(sweep, clock=clock)
    watch.poll()
    append(sweep, sweep_event("sweep_start", T0 + 5000, cells=7, jobs=1, launcher="local", todo=3))
    watch.poll()
    cell = watch.state.cells["gradual-0.975"]
    assert cell.status == "interrupted" and "stopped" in cell.message
    append(
        sweep,
        sweep_event("cell_start", T0 + 5001, cell="gradual-0.975", action="resume"),
        # a sweep that reports a finished cell as skipped does not lose its result
        sweep_event("cell_end", T0 + 5001, cell="dense", status="skipped", message="already done"),
        sweep_event("cell_end", T0 + 5001, cell="snip-0.95", status="skipped", message="dependency dense failed"),
    )
    watch.poll()
    assert statuses(watch)["gradual-0.975"] == "running" and watch.state.cells["gradual-0.975"].action == "resume"
    assert statuses(watch)["dense"] == "completed" and statuses(watch)["snip-0.95"] == "skipped"
    assert watch.state.cells["dense"].message == "already done"


def test_a_cell_known_only_from_results_takes_its_row_status(tmp_path: Path) -> None:
    sweep = new_sweep(tmp_path)  # e.g. events.jsonl lost, results.json kept
    write_results(sweep, [DENSE_ROW, SMP_975_ROW], DENSE_ROW, T0)
    state = load_sweep(sweep, clock=clock)
    assert state.cells["dense"].status == "completed"
    assert state.cells["supermask-0.975"].status == "target-missed"
    assert state.cells["gradual-0.95"].status == "pending"


def test_replaced_log_and_new_plan_start_over(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, runs=False)
    watch = SweepWatch(sweep, clock=clock)
    watch.poll()
    (sweep / "events.jsonl").unlink()  # --overwrite: a fresh log
    (sweep / "events.jsonl").write_text(sweep_event("sweep_start", T0 + 9000, cells=3, jobs=1, launcher="local"))
    assert watch.poll()
    assert statuses(watch)["dense"] == "completed"  # still from results.json
    assert statuses(watch)["gradual-0.95"] == "pending" and statuses(watch)["gradual-0.975"] == "pending"
    new_plan = plan(methods=["dense", "magnitude"], sparsity=[0.9])
    (sweep / "plan.json").write_text(json.dumps(new_plan))
    assert watch.poll()
    assert list(watch.state.cells)[:2] == ["dense", "magnitude-0.9"]
    assert watch.state.methods == ["dense", "magnitude"]


def test_running_cell_progress_follows_its_run_dir(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, runs=False)
    watch = SweepWatch(sweep, clock=clock)
    watch.poll()
    cell = watch.state.cells["gradual-0.975"]
    assert cell.step is None  # no run dir yet
    prune = {"method": "gradual", "sparsity": 0.975}
    write_run(sweep, "gradual-0.975", prune=prune, steps=800, done=300, finished=False)
    assert watch.poll()
    assert (cell.step, cell.total_steps) == (300, 800)
    data = watch.state.to_dict(NOW)
    row = next(c for c in data["cells"] if c["id"] == "gradual-0.975")
    assert row["progress"] == {"step": 300, "total": 800, "run_status": "running"}
    assert row["elapsed_s"] == pytest.approx(100.0)


def test_resolve_sweep_paths(tmp_path: Path) -> None:
    root = tmp_path / "sweeps"
    sweep = write_sweep(root)
    assert resolve_monitor_path(sweep) == ("sweep", sweep)
    assert resolve_monitor_path(sweep / "plan.json") == ("sweep", sweep)
    assert resolve_monitor_path(sweep / "events.jsonl") == ("sweep", sweep)
    assert resolve_monitor_path(root) == ("sweeps", root)
    assert resolve_monitor_path(sweep / "dense") == ("run", sweep / "dense")  # a cell is an ordinary run
    # a runs root that also holds a sweep folder lists its runs (the sweep's events.jsonl is not a run's)
    runs = tmp_path / "runs"
    write_run(runs, "a", steps=100, done=100)
    write_sweep(runs, "grid", runs=False)
    assert resolve_monitor_path(runs) == ("root", runs)
    assert [p.name for p in find_runs(runs)] == ["a"] and [r.name for r in list_runs(runs)] == ["a"]
    future = tmp_path / "future"
    future.mkdir()
    (future / "plan.json").write_text(json.dumps({**plan(), "format": "sparsecap-sweep/2"}))
    with pytest.raises(RunError, match="unsupported sweep format sparsecap-sweep/2") as err:
        resolve_monitor_path(future)
    assert "\n" not in str(err.value)
    other = tmp_path / "other"
    other.mkdir()
    (other / "plan.json").write_text('{"format": "something-else"}')
    with pytest.raises(RunError, match="not a run directory"):
        resolve_monitor_path(other)


def test_sweeps_listing(tmp_path: Path) -> None:
    write_sweep(tmp_path, "b-paper", runs=False)
    fresh = new_sweep(tmp_path)  # "paper": a plan only
    (tmp_path / "notes").mkdir()
    sweeps = list_sweeps(tmp_path)
    assert [s.name for s in sweeps] == ["b-paper", fresh.name]
    b, p = sweeps
    assert (b.status, b.done, b.total, b.running, b.failed, b.missed, b.results) == ("running", 4, 7, 1, 1, 1, 3)
    assert b.best == "supermask-0.95 CIDEr 0.668"  # the target-missed cell reached less and does not count
    assert (p.status, p.done, p.total, p.results, p.best) == ("waiting", 0, 7, 0, "")
