"""Follow a sweep folder (``sparsecap sweep``) and fold it into a summarised state — ``sparsecap monitor SWEEP_DIR``.

No UI here, and no training code: the sweep folder is the contract (``plan.json``, ``events.jsonl``, ``results.json``
and one ordinary run directory per cell; format ``sparsecap-sweep/1``).

* :class:`SweepWatch` re-reads ``plan.json`` and ``results.json`` when they change (both are rewritten atomically;
  a missing or half-read file keeps the last good copy), tails ``events.jsonl`` with
  :class:`~sparsecap_engine.monitor_state.EventTail`, and follows the run directory of each running cell (last train
  step of total steps) with a light :class:`~sparsecap_engine.monitor_state.RunWatch`.
* :class:`SweepState` holds the cells (status ``pending | running | completed | target-missed | failed | skipped |
  interrupted``), the results rows, the dense row and the CIDEr-vs-sparsity series per method.
* :class:`SweepsWatch` lists a folder of sweeps.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecap_engine.event_tail import EVENTS_FILE, EventTail
from sparsecap_engine.monitor_roots import PLAN_FILE, SWEEP_FORMAT, find_sweeps, poll_each
from sparsecap_engine.monitor_state import RunWatch

RESULTS_FILE = "results.json"
CELL_STATUSES = ("pending", "running", "completed", "target-missed", "failed", "skipped", "interrupted")
FINISHED = ("completed", "target-missed")  # the cell has results
Clock = Callable[[], float]


def finite_number(value: Any) -> float | None:
    """A finite number as float, else None (the rows may hold null, NaN or strings)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _split_id(cell_id: str) -> tuple[str, float | None]:
    """``"supermask-0.975"`` → ("supermask", 0.975); ``"dense"`` → ("dense", None)."""
    method, _, tail = cell_id.rpartition("-")
    try:
        return (method, float(tail)) if method else (cell_id, None)
    except ValueError:
        return cell_id, None


@dataclass
class CellState:
    """One cell of the grid: its plan entry and what the sweep's events (and its run directory) say about it."""

    id: str
    method: str
    target: float | None
    run: str
    steps: int | None = None
    budget: str = ""
    depends: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    planned: bool = True  # False: seen in events or results but not in plan.json (the grid changed)
    status: str = "pending"
    message: str = ""
    action: str = ""  # how the last cell_start ran it: run | resume | restart | measure (when the sweep says)
    started: float | None = None
    ended: float | None = None
    wall_s: float | None = None
    step: int | None = None  # live progress of a running cell, from its run directory
    total_steps: int | None = None
    run_status: str | None = None

    @classmethod
    def from_plan(cls, entry: dict[str, Any]) -> CellState:
        cell_id = str(entry.get("id", ""))
        method, target = _split_id(cell_id)
        steps = finite_number(entry.get("steps"))
        depends = entry.get("depends")
        argv = entry.get("argv")
        return cls(
            id=cell_id,
            method=str(entry.get("method") or method),
            target=finite_number(entry.get("sparsity")) if "sparsity" in entry else target,
            run=str(entry.get("run") or cell_id),
            steps=int(steps) if steps is not None else None,
            budget=str(entry.get("budget") or ""),
            depends=[str(d) for d in depends] if isinstance(depends, list) else [],
            argv=[str(a) for a in argv] if isinstance(argv, list) else [],
        )

    @classmethod
    def unplanned(cls, cell_id: str) -> CellState:
        method, target = _split_id(cell_id)
        return cls(id=cell_id, method=method, target=0.0 if method == "dense" else target, run=cell_id, planned=False)

    def elapsed_s(self, now: float) -> float | None:
        """Running: seconds since its start; finished: its wall time; pending: None."""
        if self.status == "running":
            return None if self.started is None else max(0.0, now - self.started)
        if self.wall_s is not None:
            return self.wall_s
        if self.started is not None and self.ended is not None:
            return max(0.0, self.ended - self.started)
        return None

    def to_dict(self, now: float) -> dict[str, Any]:
        running = self.status == "running"
        return {
            "id": self.id,
            "method": self.method,
            "target": self.target,
            "run": self.run,
            "steps": self.steps,
            "budget": self.budget,
            "depends": self.depends,
            "planned": self.planned,
            "status": self.status,
            "message": self.message,
            "action": self.action,
            "started": self.started,
            "ended": self.ended,
            "wall_s": self.wall_s,
            "elapsed_s": self.elapsed_s(now),
            "progress": {"step": self.step, "total": self.total_steps, "run_status": self.run_status}
            if running and self.step is not None
            else None,
        }


@dataclass
class Point:
    """One point of the CIDEr-vs-sparsity plot: sparsity reached (the target when not reported) and CIDEr."""

    cell: str
    sparsity: float
    cider: float
    status: str = "completed"


@dataclass
class SweepState:
    """Everything the monitor shows about one sweep."""

    name: str
    path: str
    format: str = SWEEP_FORMAT
    status: str = "waiting"  # waiting (no sweep_start yet) | running | the sweep_end status
    message: str = ""
    created: float | None = None
    methods: list[str] = field(default_factory=list)
    sparsity: list[float] = field(default_factory=list)
    budget: dict[str, Any] = field(default_factory=dict)
    cells: dict[str, CellState] = field(default_factory=dict)  # plan order, then unplanned cells as seen
    jobs: int | None = None
    launcher: str | None = None
    started: float | None = None
    ended: float | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # results.json "cells"
    dense_row: dict[str, Any] | None = None
    results_updated: float | None = None
    events: int = 0
    malformed: int = 0  # lines of events.jsonl skipped + events with bad fields
    bad_events: int = 0
    unknown: int = 0
    plan_error: str = ""  # the last plan.json / results.json read that failed (kept the previous copy)
    results_error: str = ""
    _rows_by_cell: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    # ---- derived -------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Cells per status, every status listed (zeros included) in a fixed order."""
        counts = dict.fromkeys(CELL_STATUSES, 0)
        for cell in self.cells.values():
            counts[cell.status] = counts.get(cell.status, 0) + 1
        return counts

    @property
    def done(self) -> int:
        """Cells that ended one way or another (not pending, not running)."""
        return sum(c.status not in ("pending", "running") for c in self.cells.values())

    def row(self, cell_id: str) -> dict[str, Any] | None:
        """The results row of a cell (None until the cell has one)."""
        return self._rows_by_cell.get(cell_id)

    @property
    def dense_cider(self) -> float | None:
        return finite_number(self.dense_row.get("CIDEr")) if self.dense_row else None

    @property
    def dense_latency(self) -> float | None:
        return finite_number(self.dense_row.get("latency_ms")) if self.dense_row else None

    def latency_vs_dense(self, row: dict[str, Any]) -> float | None:
        """The row's ``latency_vs_dense``, else its latency over the dense row's."""
        ratio = finite_number(row.get("latency_vs_dense"))
        if ratio is not None:
            return ratio
        latency, dense = finite_number(row.get("latency_ms")), self.dense_latency
        return latency / dense if latency is not None and dense else None

    def result_rows(self) -> list[dict[str, Any]]:
        """The dense row first, then the cells' rows in plan order (rows of unknown cells last)."""
        order = {cell_id: i for i, cell_id in enumerate(self.cells)}
        rows = [r for r in self.rows if r is not self.dense_row and r.get("cell") != (self.dense_row or {}).get("cell")]
        rows.sort(key=lambda r: order.get(str(r.get("cell")), len(order)))
        return ([self.dense_row] if self.dense_row is not None else []) + rows

    def series(self) -> dict[str, list[Point]]:
        """CIDEr vs sparsity per pruning method (plan order), points sorted by sparsity; dense is ``dense_cider``."""
        out: dict[str, list[Point]] = {m: [] for m in self.methods if m != "dense"}
        for row in self.rows:
            method = str(row.get("method") or "")
            if not method or method == "dense" or row is self.dense_row:
                continue
            cider = finite_number(row.get("CIDEr"))
            x = finite_number(row.get("sparsity"))
            x = x if x is not None else finite_number(row.get("target"))
            if cider is None or x is None:
                continue
            status = str(row.get("status") or "completed")
            out.setdefault(method, []).append(Point(str(row.get("cell", "")), x, cider, status))
        for points in out.values():
            points.sort(key=lambda p: p.sparsity)
        return out

    def x_range(self) -> tuple[float, float] | None:
        """The sparsity axis: the planned targets and every point reached."""
        xs = [s for s in self.sparsity if s > 0] + [p.sparsity for ps in self.series().values() for p in ps]
        return (min(xs), max(xs)) if xs else None

    # ---- folding -------------------------------------------------------------------------------------------
    def cell(self, cell_id: str) -> CellState:
        if cell_id not in self.cells:
            self.cells[cell_id] = CellState.unplanned(cell_id)
        return self.cells[cell_id]

    def set_plan(self, plan: dict[str, Any]) -> None:
        """Take the grid from plan.json (cells not in it but already seen are kept, marked unplanned)."""
        self.format = str(plan.get("format", self.format))
        self.name = str(plan.get("name") or self.name)
        self.created = finite_number(plan.get("created"))
        self.methods = [m for m in _list(plan.get("methods")) if isinstance(m, str)]
        self.sparsity = [s for s in (finite_number(v) for v in _list(plan.get("sparsity"))) if s is not None]
        self.budget = plan.get("budget") if isinstance(plan.get("budget"), dict) else {}
        old, self.cells = self.cells, {}
        for entry in _list(plan.get("cells")):
            if isinstance(entry, dict) and entry.get("id"):
                cell = CellState.from_plan(entry)
                self.cells[cell.id] = cell
        for cell_id, cell in old.items():
            if cell_id not in self.cells and not cell.planned:
                self.cells[cell_id] = cell

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event of the sweep's log. Unknown kinds are counted, never fatal."""
        self.events += 1
        handler = _HANDLERS.get(event["kind"])
        if handler is None:
            self.unknown += 1
            return
        t = finite_number(event.get("time"))
        try:
            handler(self, event, t)
        except (TypeError, ValueError, AttributeError, KeyError):
            self.bad_events += 1

    def _interrupt_running(self, why: str) -> None:
        for cell in self.cells.values():
            if cell.status == "running":
                cell.status, cell.message = "interrupted", why

    def _on_sweep_start(self, e: dict[str, Any], t: float | None) -> None:
        # a rerun: cells the previous sweep left running were cut off (the rerun resumes them)
        self._interrupt_running("the sweep stopped before this cell ended")
        self.status, self.message, self.ended = "running", "", None
        self.started = t if self.started is None else self.started
        jobs = finite_number(e.get("jobs"))
        self.jobs = int(jobs) if jobs is not None else self.jobs
        self.launcher = str(e["launcher"]) if e.get("launcher") is not None else self.launcher

    def _event_cell(self, e: dict[str, Any]) -> CellState:
        cell_id = e["cell"]
        if not isinstance(cell_id, str) or not cell_id:
            raise TypeError("cell id must be a non-empty string")
        return self.cell(cell_id)

    def _on_cell_start(self, e: dict[str, Any], t: float | None) -> None:
        cell = self._event_cell(e)
        cell.status, cell.message = "running", ""
        cell.action = str(e.get("action") or "")
        cell.started, cell.ended, cell.wall_s = t, None, None
        cell.step = cell.total_steps = cell.run_status = None

    def _on_cell_end(self, e: dict[str, Any], t: float | None) -> None:
        cell = self._event_cell(e)
        status = str(e.get("status") or "completed")
        message = str(e.get("message") or "")
        if status == "skipped" and cell.status in FINISHED:  # a rerun skipping a finished cell keeps its result
            cell.message = message or cell.message
            return
        cell.status, cell.message, cell.ended = status, message, t
        cell.wall_s = finite_number(e.get("wall_s"))
        cell.run_status = None

    def _on_sweep_end(self, e: dict[str, Any], t: float | None) -> None:
        self._interrupt_running("the sweep ended before this cell did")
        self.status = str(e.get("status") or "completed")
        self.message = str(e.get("message") or "")
        self.ended = t

    def set_results(self, results: dict[str, Any]) -> None:
        rows = results.get("cells")
        self.rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
        dense = results.get("dense")
        if not isinstance(dense, dict):
            dense = next((r for r in self.rows if r.get("method") == "dense"), None)
        self.dense_row = dense
        self.results_updated = finite_number(results.get("updated"))
        self._rows_by_cell = {}
        for row in ([dense] if dense is not None else []) + self.rows:
            cell_id = row.get("cell")
            if isinstance(cell_id, str) and cell_id:
                self._rows_by_cell[cell_id] = row
                self.cell(cell_id)

    def effective_status(self, cell: CellState) -> str:
        """The cell's status from events; a cell the log knows nothing of (or skipped) takes its row's status."""
        if cell.status in ("pending", "skipped"):
            row = self.row(cell.id)
            status = row.get("status") if row else None
            if isinstance(status, str) and status in FINISHED:
                return status
        return cell.status

    # ---- output --------------------------------------------------------------------------------------------
    def to_dict(self, now: float) -> dict[str, Any]:
        """The ``monitor --json`` shape (``kind: "sweep"``); ``now`` dates the running cells' elapsed time."""
        series = self.series()
        return {
            "kind": "sweep",
            "format": self.format,
            "name": self.name,
            "path": self.path,
            "status": self.status,
            "message": self.message,
            "created": self.created,
            "started": self.started,
            "ended": self.ended,
            "jobs": self.jobs,
            "launcher": self.launcher,
            "methods": self.methods,
            "sparsity": self.sparsity,
            "budget": self.budget,
            "counts": self.counts(),
            "done": self.done,
            "total": len(self.cells),
            "cells": [c.to_dict(now) for c in self.cells.values()],
            "results": [{**r, "latency_vs_dense": self.latency_vs_dense(r)} for r in self.result_rows()],
            "results_updated": self.results_updated,
            "dense": self.dense_row,
            "plot": {
                "x": "sparsity",
                "y": "CIDEr",
                "dense": self.dense_cider,
                "methods": {m: [p.__dict__ for p in pts] for m, pts in series.items()},
            },
            "events": self.events,
            "malformed": self.malformed,
            "unknown": self.unknown,
        }


_HANDLERS = {
    "sweep_start": SweepState._on_sweep_start,
    "cell_start": SweepState._on_cell_start,
    "cell_end": SweepState._on_cell_end,
    "sweep_end": SweepState._on_sweep_end,
}


class _JsonFile:
    """A JSON object file rewritten atomically: ``read()`` returns it when it changed since the last read, None when
    unchanged or missing; ``error`` holds why the last changed copy could not be parsed (it is retried next time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self.error = ""

    def read(self) -> dict[str, Any] | None:
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            if key == self._seen:
                return None
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.error = f"{self.path.name}: {exc}".splitlines()[0]
            return None
        if not isinstance(data, dict):
            self.error = f"{self.path.name}: not a JSON object"
            return None
        self._seen, self.error = key, ""
        return data


class SweepWatch:
    """Follow one sweep folder into a :class:`SweepState`. ``poll()`` → True when something changed.

    ``follow_cells`` (default) also tails the run directory of each running cell for its progress; ``clock`` dates
    the running cells (tests pass a fixed one).
    """

    def __init__(self, sweep_dir: Path, follow_cells: bool = True, clock: Clock = time.time) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.follow_cells = follow_cells
        self.clock = clock
        self.plan = _JsonFile(self.sweep_dir / PLAN_FILE)
        self.results = _JsonFile(self.sweep_dir / RESULTS_FILE)
        self.tail = EventTail(self.sweep_dir / EVENTS_FILE)
        self._plan: dict[str, Any] = {}
        self._results: dict[str, Any] | None = None
        self._runs: dict[str, RunWatch] = {}
        self.state = self._fresh()

    def _fresh(self) -> SweepState:
        state = SweepState(name=self.sweep_dir.name, path=str(self.sweep_dir))
        state.set_plan(self._plan)
        if self._results is not None:
            state.set_results(self._results)
        return state

    def now(self) -> float:
        return self.clock()

    def poll(self) -> bool:
        changed = False
        plan = self.plan.read()
        if plan is not None and plan != self._plan:  # a new grid: fold the log again over it
            self._plan = plan
            self.tail = EventTail(self.sweep_dir / EVENTS_FILE)
            self._runs.clear()
            self.state = self._fresh()
            changed = True
        events = self.tail.poll()
        if self.tail.restarted:  # the log was replaced: start over
            self._runs.clear()
            self.state = self._fresh()
            changed = True
        state = self.state
        for event in events:
            state.apply(event)
        results = self.results.read()
        if results is not None:
            self._results = results
            state.set_results(results)
            changed = True
        for cell in state.cells.values():  # a cell with no event but a results row
            status = state.effective_status(cell)
            if status != cell.status:
                cell.status = status
                changed = True
        if self.follow_cells:
            changed = self._follow_running() or changed
        malformed = self.tail.malformed + state.bad_events
        errors = (self.plan.error, self.results.error)
        if malformed != state.malformed or errors != (state.plan_error, state.results_error):
            state.malformed, (state.plan_error, state.results_error) = malformed, errors
            changed = True
        return changed or bool(events)

    def _follow_running(self) -> bool:
        """Progress of running cells from their run directories (last train step of total steps)."""
        changed = False
        running = {c.id: c for c in self.state.cells.values() if c.status == "running"}
        for cell_id in list(self._runs):
            if cell_id not in running:
                del self._runs[cell_id]
        for cell_id, cell in running.items():
            watch = self._runs.get(cell_id)
            if watch is None:
                watch = self._runs[cell_id] = RunWatch(self.sweep_dir / cell.run, light=True)
            if not watch.poll():
                continue
            run = watch.state
            progress = (run.step if run.events else None, run.total_steps or cell.steps, run.status)
            if progress != (cell.step, cell.total_steps, cell.run_status):
                cell.step, cell.total_steps, cell.run_status = progress
                changed = True
        return changed


def load_sweep(sweep_dir: Path, clock: Clock = time.time) -> SweepState:
    """Fold a sweep folder once (the ``--once``/``--json`` snapshot)."""
    watch = SweepWatch(sweep_dir, clock=clock)
    watch.poll()
    return watch.state


# ---- folders of sweeps -----------------------------------------------------------------------------------------
@dataclass
class SweepSummary:
    """One row of the sweeps list."""

    name: str
    path: str
    status: str
    done: int
    total: int
    running: int
    failed: int  # failed + interrupted
    missed: int  # target-missed
    results: int
    best: str  # e.g. "supermask-0.975 CIDEr 0.61" — the best pruned cell at the highest sparsity with results

    @classmethod
    def of(cls, state: SweepState) -> SweepSummary:
        counts = state.counts()
        return cls(
            name=state.name,
            path=state.path,
            status=state.status,
            done=state.done,
            total=len(state.cells),
            running=counts["running"],
            failed=counts["failed"] + counts["interrupted"],
            missed=counts["target-missed"],
            results=len(state.rows),
            best=_best(state),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _best(state: SweepState) -> str:
    """The best CIDEr among completed pruned cells at the highest sparsity reached."""
    points = [(p.sparsity, p.cider, p.cell) for pts in state.series().values() for p in pts if p.status == "completed"]
    if not points:
        return ""
    top = max(x for x, _, _ in points)
    _, cider, cell = max((p for p in points if p[0] >= top - 1e-9), key=lambda p: p[1])
    return f"{cell} CIDEr {cider:.4g}"


class SweepsWatch:
    """Follow every sweep under a root (new sweeps appear on the next poll); cells' run directories are not read."""

    def __init__(self, root: Path, clock: Clock = time.time) -> None:
        self.root = Path(root)
        self.clock = clock
        self.watches: dict[str, SweepWatch] = {}

    def poll(self) -> bool:
        return poll_each(self.watches, find_sweeps(self.root),
                         lambda path: SweepWatch(path, follow_cells=False, clock=self.clock))

    def summaries(self) -> list[SweepSummary]:
        return [SweepSummary.of(w.state) for _, w in sorted(self.watches.items())]


def list_sweeps(root: Path) -> list[SweepSummary]:
    """Summaries of every sweep under ``root``."""
    watch = SweepsWatch(root)
    watch.poll()
    return watch.summaries()
