"""The monitor's engine side: tailing events.jsonl robustly and folding it into a summarised state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsecap_engine.errors import RunError
from sparsecap_engine.event_tail import EventTail
from sparsecap_engine.monitor_roots import list_runs, resolve_monitor_path
from sparsecap_engine.monitor_state import RunWatch, Series, load_state
from tests.monitor_fixtures import LAYERS, T0, event, run_events, write_run


def test_missing_file_waits_then_appears(tmp_path: Path) -> None:
    tail = EventTail(tmp_path / "events.jsonl")
    assert tail.poll() == []
    (tmp_path / "events.jsonl").write_text(event("train", 1, T0, loss=2.0))
    assert [e["step"] for e in tail.poll()] == [1]
    assert tail.poll() == []


def test_torn_last_line_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    line = event("train", 5, T0, loss=1.5, lr=0.001)
    path.write_text(event("train", 4, T0, loss=2.0) + line[:20])
    tail = EventTail(path)
    assert [e["step"] for e in tail.poll()] == [4]
    assert tail.pending == 20 and tail.malformed == 0
    assert tail.poll() == []  # still torn: nothing new, nothing counted
    with path.open("a") as f:
        f.write(line[20:])
    assert [e["step"] for e in tail.poll()] == [5]
    assert tail.pending == 0 and tail.malformed == 0


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b"{not json}\n"
        + event("train", 1, T0, loss=2.0).encode()
        + b"[1, 2, 3]\n"  # JSON, but not an event object
        + b'{"no_kind": 1}\n'
        + b"\xff\xfe garbage\n"
        + b"\n"  # blank lines are ignored
        + event("train", 2, T0, loss=1.0).encode()
    )
    tail = EventTail(path)
    assert [e["step"] for e in tail.poll()] == [1, 2]
    assert tail.malformed == 4


def test_objects_without_kind_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(event("train", 1, T0, loss=2.0) + '{"no_kind": 1}\n' + '{"kind": 3}\n' + event("val", 2, T0))
    tail = EventTail(path)
    assert [e["kind"] for e in tail.poll()] == ["train", "val"]
    assert tail.malformed == 2


def test_bad_fields_count_as_malformed_and_unknown_kinds_are_kept_apart(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "events.jsonl").write_text(
        event("train", 1, T0, loss="not a number") + event("future_kind", 1, T0) + event("train", 2, T0, loss=1.0)
    )
    state = load_state(run)
    assert state.malformed == 1 and state.unknown == 1
    assert state.curves["loss"].values == [1.0]


def test_replaced_log_starts_over(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    path = run / "events.jsonl"
    path.write_text(event("train", 1, T0, loss=3.0) + event("train", 2, T0, loss=2.0))
    watch = RunWatch(run)
    watch.poll()
    assert watch.state.step == 2
    path.unlink()
    path.write_text(event("train", 1, T0, loss=9.0))  # --overwrite: a new, shorter log
    assert watch.poll()
    assert watch.state.step == 1 and watch.state.curves["loss"].values == [9.0]


def test_fold_of_a_pruning_run(tmp_path: Path) -> None:
    run = write_run(tmp_path, "gradual", prune={"method": "gradual", "sparsity": 0.9}, steps=400, done=300)
    state = load_state(run)
    assert state.status == "running" and state.step == 300 and state.total_steps == 400
    assert state.model_name == "updown" and state.method == "gradual" and state.target == 0.9
    assert state.device == "cpu" and state.params == 123_456
    assert len(state.curves["loss"]) == 30 and len(state.curves["lr"]) == 30
    assert state.val["CIDEr-D"].steps == [100, 200, 300]
    assert state.metrics == {"CIDEr-D": 0.65, "BLEU-4": 0.2167}
    assert state.best_cider == 0.65 and state.best_step == 300
    assert state.sparsity is not None and list(state.sparsity.layers) == LAYERS
    assert state.sparsity.overall == pytest.approx(0.9 * 300 / 300)
    assert state.sparsity_curve.steps == [100, 200, 300]
    assert len(state.samples) == 2 and state.samples_step == 300
    assert state.checkpoint == {"path": str(run / "checkpoints" / "last.safetensors"), "step": 300, "best": True}
    # ETA from the pace of the train events: 0.5 s per step in the fixture, 100 steps to go
    assert state.eta_s == pytest.approx(50.0)
    assert state.curve_names() == ["loss", "lr", "CIDEr-D", "BLEU-4", "sparsity"]


def test_run_end_and_resume(tmp_path: Path) -> None:
    run = write_run(tmp_path, "dense", steps=200, done=200)
    state = load_state(run)
    assert state.status == "completed" and state.eta_s is None and state.method == "dense"
    with (run / "events.jsonl").open("a") as f:  # --resume appends to the same log
        f.write(event("train", 210, T0 + 500, loss=1.0, lr=1e-3, items_per_s=100.0))
    watch = RunWatch(run)
    watch.poll()
    assert watch.state.status == "running" and watch.state.step == 210


def test_layers_given_as_dicts_are_read(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    layers = {"a.weight": {"sparsity": 0.5, "numel": 10}, "b.weight": 0.25}
    (run / "events.jsonl").write_text(event("sparsity", 3, T0, overall=0.4, target=0.9, layers=layers, nnz=7))
    state = load_state(run)
    assert state.sparsity.layers == {"a.weight": 0.5, "b.weight": 0.25}
    assert state.sparsity.extra == {"nnz": 7}


def test_incremental_polls_equal_one_fold(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    lines = run_events(run, steps=300, done=300, prune={"method": "snip", "sparsity": 0.8})
    watch = RunWatch(run)
    path = run / "events.jsonl"
    data = "".join(lines)
    for cut in range(0, len(data), 997):  # appends that tear lines anywhere
        with path.open("a") as f:
            f.write(data[cut : cut + 997])
        watch.poll()
    whole = load_state(run)
    assert watch.state.to_dict() == whole.to_dict()
    assert watch.state.malformed == 0


def test_series_downsample_keeps_ends() -> None:
    s = Series(list(range(1000)), [float(i) for i in range(1000)])
    d = s.downsample(10)
    assert len(d) == 10 and d.steps[0] == 0 and d.steps[-1] == 999
    assert s.to_dict(10)["points"] == 1000


def test_runs_listing(tmp_path: Path) -> None:
    write_run(tmp_path, "b-prune", prune={"method": "supermask", "sparsity": 0.95}, steps=400, done=200)
    write_run(tmp_path, "a-dense", steps=200, done=200)
    (tmp_path / "not-a-run").mkdir()
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == ["a-dense", "b-prune"]
    a, b = runs
    assert (a.status, a.model, a.method, a.target, a.best_cider, a.step) == (
        "completed",
        "updown",
        "dense",
        None,
        0.8,
        200,
    )
    assert (b.status, b.method, b.target, b.step, b.total_steps) == ("running", "supermask", 0.95, 200, 400)
    assert b.best_cider == pytest.approx(0.5) and b.sparsity == pytest.approx(0.95 * 200 / 300, abs=1e-4)


def test_light_listing_keeps_event_order(tmp_path: Path) -> None:
    """The listing parses only the last train line; a run_end after it must still win."""
    run = write_run(tmp_path, "done", steps=100, done=100, log_every=10, val_every=50)
    assert list_runs(tmp_path)[0].status == "completed"
    assert json.loads((run / "events.jsonl").read_text().splitlines()[-1])["kind"] == "run_end"


def test_run_without_events_uses_config_toml(tmp_path: Path) -> None:
    run = write_run(tmp_path, "fresh", lines=[], prune={"method": "lottery", "sparsity": 0.9})
    state = load_state(run)
    assert state.status == "waiting" and state.method == "lottery" and state.target == 0.9


def test_resolve_monitor_path(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r1", steps=100, done=50)
    assert resolve_monitor_path(run) == ("run", run)
    assert resolve_monitor_path(run / "events.jsonl") == ("run", run)
    assert resolve_monitor_path(tmp_path) == ("root", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resolve_monitor_path(empty) == ("root", empty)
    with pytest.raises(RunError, match="no run or runs folder"):
        resolve_monitor_path(tmp_path / "missing")
    (empty / "notes.txt").write_text("hi")
    with pytest.raises(RunError, match="not a run directory"):
        resolve_monitor_path(empty)
    with pytest.raises(RunError, match="not a run directory"):
        resolve_monitor_path(empty / "notes.txt")


def test_sort_and_filter_runs_put_unknown_values_last():
    from sparsecap_engine.monitor_roots import RunSummary, filter_runs, sort_runs

    def run(name: str, status: str, cider: float | None, started: float | None, method: str = "") -> RunSummary:
        return RunSummary(name=name, path=name, status=status, model="updown", method=method, target=None, step=1,
                          total_steps=None, best_cider=cider, best_step=None, sparsity=None, started=started)

    runs = [run("b", "completed", 0.5, 20.0), run("a", "running", None, 30.0, "supermask"),
            run("c", "crashed", 0.9, None, "gradual")]
    assert [r.name for r in sort_runs(runs)] == ["a", "b", "c"]  # newest first, never started last
    assert [r.name for r in sort_runs(runs, "started", reverse=True)] == ["b", "a", "c"]
    assert [r.name for r in sort_runs(runs, "best CIDEr-D")] == ["c", "b", "a"]  # best first, unscored last
    assert [r.name for r in sort_runs(runs, "best CIDEr-D", reverse=True)] == ["b", "c", "a"]
    assert [r.name for r in sort_runs(runs, "name", reverse=True)] == ["c", "b", "a"]
    assert [r.name for r in filter_runs(runs, "UPDOWN supermask")] == ["a"]
    assert [r.name for r in filter_runs(runs, "crash")] == ["c"] and len(filter_runs(runs, "  ")) == 3
    with pytest.raises(RunError, match="unknown sort key"):
        sort_runs(runs, "size")


def test_delete_run_refuses_a_live_run_and_a_folder_that_is_no_run(tmp_path: Path):
    import os
    import socket

    from sparsecap_engine.runs import LOCK_NAME, delete_run

    run = write_run(tmp_path, "r", steps=10, done=10)
    (run / "checkpoints" / "best.safetensors").write_bytes(b"x" * 1000)
    (run / LOCK_NAME).write_text(f"pid {os.getpid()} on {socket.gethostname()}")  # this (live) process holds it
    with pytest.raises(RunError, match="is running"):
        delete_run(run)
    assert run.is_dir()
    (run / LOCK_NAME).write_text("pid 999999999 on " + socket.gethostname())  # a dead holder: a finished run
    size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    assert delete_run(run) == size and size > 1000 and not run.exists()
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.png").write_bytes(b"png")
    with pytest.raises(RunError, match="not a sparsecap run"):
        delete_run(other)
    assert (other / "a.png").is_file()
