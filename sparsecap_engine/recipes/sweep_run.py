"""Run a planned sweep: decide per cell (skip, run, resume, restart, measure), launch cells as their dependencies
allow, record each cell's row and events, and rewrite the results after every cell.

Resuming: rerunning the same sweep skips cells whose row is final (completed / target-missed) and whose run directory
still exists; an unfinished train cell continues with ``--resume`` (from ``checkpoints/last.state.pt``); an
unfinished prune cell starts again with ``--overwrite`` (``sparsecap prune`` has no resume yet); a run that ended but
was not measured is only measured; failed, skipped and interrupted cells are retried.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecap_engine.progress import Progress, no_progress
from sparsecap_engine.recipes.sweep import (
    FINAL,
    METRICS,
    Action,
    Cell,
    SweepOptions,
    SweepPlan,
    cell_state,
    decide,
    prepare_folder,
    thread_env,
    threads_per_job,
    with_threads,
)
from sparsecap_engine.recipes.sweep_launch import CellJob, Launcher, classify, make_launcher
from sparsecap_engine.recipes.sweep_results import (
    MEASURE_FILE,
    load_rows,
    make_row,
    ordered,
    read_json,
    write_results,
)
from sparsecap_engine.runs import EventLog, lock_folder, read_events, unlock_folder

POLL_S = 0.2


@dataclass
class SweepResult:
    """The outcome of one ``run_sweep`` call: overall status, rows in plan order, result files, per-cell messages."""

    folder: Path
    status: str
    rows: list[dict[str, Any]]
    paths: dict[str, Path]
    messages: dict[str, str] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [r["cell"] for r in self.rows if r["status"] not in FINAL]


def plan_actions(plan: SweepPlan, overwrite: bool = False) -> dict[str, Action]:
    """The action for every cell of ``plan``, from what is on disk."""
    rows = {} if overwrite else load_rows(plan.folder)
    return {c.id: decide(c, cell_state(plan.folder, c, rows), overwrite) for c in plan.cells}


def last_messages(folder: Path) -> dict[str, str]:
    """Each cell's message from its last ``cell_end`` event."""
    path = Path(folder) / "events.jsonl"
    out: dict[str, str] = {}
    if path.is_file():
        for e in read_events(path):
            if e.get("kind") == "cell_end":
                out[e.get("cell", "")] = e.get("message") or ""
    return out


def threads_for(opts: SweepOptions) -> int:
    """Threads per cell: the CPUs divided between parallel cells; on Slurm, the CPUs each job asks for."""
    return opts.slurm_cpus if opts.launcher == "slurm" else threads_per_job(opts.jobs)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``<sweep>/.lock`` for the duration: a second sweep process on the same folder is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    lock_folder(folder, "sweep", reentrant=False)
    try:
        yield
    finally:
        unlock_folder(folder)


def run_sweep(plan: SweepPlan, opts: SweepOptions, progress: Progress = no_progress) -> SweepResult:
    """Prepare the folder (plan.json, configs), then run every cell that is not done; returns when all are."""
    with folder_lock(plan.folder):
        return _run_sweep(plan, opts, progress)


def _run_sweep(plan: SweepPlan, opts: SweepOptions, progress: Progress) -> SweepResult:
    folder = plan.folder
    prepare_folder(plan, opts.overwrite)
    actions = plan_actions(plan, opts.overwrite)
    rows = {} if opts.overwrite else load_rows(folder)
    rows = {cid: r for cid, r in rows.items() if cid in actions}
    for cell in plan.cells:  # finished cells: rows rebuilt from what their runs left (new columns after an upgrade)
        old = rows.get(cell.id)
        if old is not None and actions[cell.id].kind == "skip" and old["status"] in FINAL:
            run = folder / cell.run
            rows[cell.id] = make_row(cell, old["status"], old.get("wall_s"), read_json(run / MEASURE_FILE),
                                     read_json(run / "sparsity.json"))
    messages = {} if opts.overwrite else last_messages(folder)
    threads = threads_for(opts)
    status: dict[str, str] = {cid: rows[cid]["status"] for cid, a in actions.items() if a.kind == "skip"}
    pending = [c for c in plan.cells if actions[c.id].kind != "skip"]
    total = len(plan.cells)
    launcher = make_launcher(opts.launcher, folder, opts.jobs, opts.slurm_partition, opts.slurm_time,
                             opts.slurm_gpus, opts.slurm_cpus)
    log = EventLog(folder / "events.jsonl")
    log.write("sweep_start", 0, cells=total, jobs=opts.jobs, launcher=opts.launcher, todo=len(pending))
    paths = {name: folder / f"results.{name}" for name in ("json", "csv", "md")}

    def record(cell: Cell, state: str, message: str, wall_s: float | None) -> None:
        nonlocal paths
        run = folder / cell.run
        measure = read_json(run / MEASURE_FILE) if state in FINAL else None
        sparsity = read_json(run / "sparsity.json") if state in FINAL else None
        rows[cell.id] = make_row(cell, state, wall_s, measure, sparsity)
        status[cell.id] = state
        messages[cell.id] = message
        log.write("cell_end", 0, cell=cell.id, status=state, message=message,
                  wall_s=None if wall_s is None else round(wall_s, 2))
        # plots change only with a measured cell; heat maps only for its method
        paths = write_results(plan, rows, messages, plots=state in FINAL, methods=[cell.method])
        progress("sweep", len(status), total, cell=cell.id, status=state)

    running: dict[str, tuple[Any, CellJob]] = {}
    ran: list[str] = []
    interrupted = False
    try:
        paths = write_results(plan, rows, messages, plots=True)  # all plots redrawn (a rerun after an upgrade)
        progress("sweep", len(status), total)
        while pending or running:
            for cell in list(pending):
                if len(running) >= launcher.slots:
                    break
                bad = [d for d in cell.depends if d in status and status[d] not in FINAL]
                if bad:
                    pending.remove(cell)
                    record(cell, "skipped", f"dependency {bad[0]} {status[bad[0]]}", None)
                    continue
                if any(d not in status for d in cell.depends):
                    continue
                pending.remove(cell)
                job = cell_job(plan, cell, actions[cell.id], threads, opts.executable, opts.metrics)
                log.write("cell_start", 0, cell=cell.id, action=actions[cell.id].kind)
                running[cell.id] = (launcher.submit(job), job)
                ran.append(cell.id)
            for cid, (handle, job) in list(running.items()):
                if launcher.done(handle):
                    del running[cid]
                    res = launcher.result(handle, job)
                    state, message = classify(job, res)
                    record(plan.cell(cid), state, message, res.wall_s)
            if pending or running:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        interrupted = True
        _interrupt(launcher, running, plan, record)
    finally:
        launcher.close()
    done = sum(1 for s in status.values() if s in FINAL)
    failed = sum(1 for s in status.values() if s in ("failed", "skipped"))
    overall = "interrupted" if interrupted else "failed" if failed else "completed"
    log.write("sweep_end", 0, status=overall, done=done, failed=failed)
    log.close()
    return SweepResult(folder, overall, ordered(plan, rows), paths, messages, ran)


def _interrupt(launcher: Launcher, running: dict[str, tuple[Any, CellJob]], plan: SweepPlan, record) -> None:
    """Ctrl-C: stop the running cells (SIGINT, then SIGKILL after a grace period) and record them as interrupted."""
    launcher.interrupt()
    deadline = time.monotonic() + 60.0
    try:
        while running and time.monotonic() < deadline:
            for cid, (handle, job) in list(running.items()):
                if launcher.done(handle):
                    del running[cid]
                    res = launcher.result(handle, job)
                    state, message = classify(job, res)  # a cell may have finished just before the Ctrl-C
                    if state not in FINAL:
                        state, message = "interrupted", "interrupted (Ctrl-C)"
                    record(plan.cell(cid), state, message, res.wall_s)
            time.sleep(POLL_S)
    except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
        launcher.kill()
    for cid in list(running):
        del running[cid]
        record(plan.cell(cid), "interrupted", "interrupted (Ctrl-C)", None)


def cell_job(plan: SweepPlan, cell: Cell, action: Action, threads: int, executable: list[str],
             metrics: list[str] | None = None) -> CellJob:
    """The job of one cell: its training command for ``action`` (with thread settings) and the measure command."""
    run = str(plan.folder / cell.run)
    argv = with_threads(action.argv, threads) if action.argv is not None else None
    measure = ["sparsecap", "sweep-measure", run, "--metrics", ",".join(metrics or METRICS)]
    return CellJob(cell=cell.id, kind=cell.kind, argv=argv, measure=measure,
                   run=run, env=thread_env(threads), cwd=os.getcwd(), logs=str(plan.folder / "logs"),
                   executable=list(executable))
