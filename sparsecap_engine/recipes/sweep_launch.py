"""How a sweep's cells run: one cell job (its ``sparsecap train|prune`` command, then ``sparsecap sweep-measure``) as
child processes, and the launchers that run jobs — a local pool of parallel processes, or submitit (Slurm, or
submitit's own local executor, which lets tests exercise the same path on this machine)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sparsecap_engine.errors import UsageError
from sparsecap_engine.humanize import percent
from sparsecap_engine.recipes.sweep import last_run_end

#: seconds a child gets to stop cleanly after SIGINT (it saves its last checkpoint and writes run_end) before SIGKILL
INTERRUPT_GRACE_S = 30.0


@dataclass
class Stop:
    """Local stop requests: ``requested`` (first Ctrl-C: SIGINT, clean stop) and ``kill`` (second: SIGKILL now)."""

    requested: threading.Event = field(default_factory=threading.Event)
    kill: threading.Event = field(default_factory=threading.Event)

    def is_set(self) -> bool:
        return self.requested.is_set()


@dataclass
class CellJob:
    """Everything one cell's job needs (picklable: submitit ships it to another process or machine)."""

    cell: str
    kind: str
    #: the training command (``sparsecap train|prune ...``, thread settings included); None = measure only
    argv: list[str] | None
    measure: list[str]
    run: str
    env: dict[str, str]
    cwd: str
    logs: str
    #: the command that stands for ``sparsecap``
    executable: list[str] = field(default_factory=lambda: [sys.executable, "-m", "sparsecap_cli"])


@dataclass
class JobResult:
    """What a cell's job did: exit codes, the run's final status, a one-line message and the wall time."""

    cell: str
    rc: int | None = None
    run_status: str | None = None
    measure_rc: int | None = None
    message: str = ""
    wall_s: float = 0.0
    interrupted: bool = False
    #: prune runs: whether the final sparsity is within the 5 % NNZ rule of the target (``sparsity.json``)
    reached: bool | None = None
    note: str = ""


def _last_line(*paths: Path) -> str:
    for path in paths:
        try:
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            continue
        lines = [ln for ln in lines if not ln.startswith("# sweep:")]
        if lines:
            return lines[-1]
    return ""


def _run(argv: list[str], job: CellJob, phase: str, stop: Stop | None) -> tuple[int, str, bool]:
    """One child process with stdout/stderr appended to ``<logs>/<cell>.<phase>.out|.err`` → (rc, message, stopped).

    Locally (``stop`` given) the child gets its own session, so a terminal Ctrl-C reaches only the sweep, which then
    sets ``stop``: the child gets one SIGINT and ``INTERRUPT_GRACE_S`` to stop cleanly (a second Ctrl-C: at once),
    then SIGKILL. Under submitit
    (``stop`` None) a KeyboardInterrupt of the job is forwarded to the child the same way."""
    logs = Path(job.logs)
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{job.cell}.{phase}.out", logs / f"{job.cell}.{phase}.err"
    command = [*job.executable, *argv[1:]]
    env = {**os.environ, **job.env}
    with out_path.open("a") as out, err_path.open("a") as err:
        stamp = f"# sweep: {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n"
        out.write(stamp)
        err.write(stamp)
        out.flush()
        err.flush()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=job.cwd,
                                start_new_session=stop is not None)
        stopped = False
        try:
            while proc.poll() is None:
                if stop is not None and stop.requested.wait(0.2):
                    stopped = True
                    _stop_child(proc, own_group=True, kill=stop.kill)
                elif stop is None:
                    proc.wait()
        except KeyboardInterrupt:
            stopped = True
            _stop_child(proc, own_group=False)
    rc = proc.returncode
    message = _last_line(err_path, out_path) if rc else ""
    return rc, message or (f"exit code {rc}" if rc else ""), stopped


def _stop_child(proc: subprocess.Popen, own_group: bool, kill: threading.Event | None = None) -> None:
    def send(sig: int) -> None:
        try:
            if own_group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    send(signal.SIGINT)
    deadline = time.monotonic() + INTERRUPT_GRACE_S
    try:
        while proc.poll() is None and time.monotonic() < deadline and not (kill is not None and kill.is_set()):
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    if proc.poll() is None:
        send(signal.SIGKILL)
        proc.wait()


def execute(job: CellJob, stop: Stop | None = None) -> JobResult:
    """Run a cell: its training command (if any), then — when the run completed or missed its target —
    ``sparsecap sweep-measure``. Never raises for a failing child: the result says what happened."""
    t0, started = time.perf_counter(), time.time()
    res = JobResult(job.cell)
    if job.argv is not None:
        res.rc, res.message, res.interrupted = _run(job.argv, job, job.kind, stop)
    end = last_run_end(Path(job.cwd) / job.run)
    if end is not None and job.argv is not None and float(end.get("time", 0.0)) < started:
        end = None  # a run_end left by an earlier attempt: this command ended before writing its own
    res.run_status = end.get("status") if end else None
    if job.kind == "prune" and res.run_status in ("completed", "target-missed"):
        res.reached, res.note = _reached(Path(job.cwd) / job.run / "sparsity.json")
    if res.interrupted or (stop is not None and stop.is_set()):
        res.interrupted = True
    elif res.run_status in ("completed", "target-missed") and (res.rc in (0, None) or res.run_status != "completed"):
        note = (end or {}).get("message") or ""
        res.measure_rc, message, res.interrupted = _run(job.measure, job, "measure", stop)
        if res.measure_rc:
            res.message = f"measure: {message}"
        elif res.run_status == "target-missed":
            res.message = note or res.message
    res.wall_s = time.perf_counter() - t0
    return res


def _reached(path: Path) -> tuple[bool | None, str]:
    """``reached`` of a prune run's ``sparsity.json`` and a one-line note when it is false."""
    try:
        data = json.loads(path.read_text())
        value, target, final = data.get("reached"), data.get("target"), data["pruned"]["sparsity"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, ""
    if not isinstance(value, bool):
        return None, ""
    return value, "" if value else f"target sparsity {percent(target)} not reached (final {percent(final)})"


def classify(job: CellJob, res: JobResult) -> tuple[str, str]:
    """A cell's status and message from its job's result. A prune run whose ``sparsity.json`` says the target was
    not reached is ``target-missed`` even when the run itself ended ``completed``."""
    if res.interrupted:
        return "interrupted", "interrupted (Ctrl-C)"
    if job.kind == "prune" and (res.run_status == "target-missed" or
                                (res.run_status == "completed" and res.reached is False)):
        return "target-missed", res.message or res.note
    if res.rc:
        return "failed", res.message
    if res.run_status != "completed":
        return "failed", res.message or f"run ended with status {res.run_status or 'unknown (no run_end event)'}"
    if res.measure_rc:
        return "failed", res.message
    return "completed", res.message


# --- launchers --------------------------------------------------------------------------------------------------


class Launcher(Protocol):
    """Runs cell jobs: ``slots`` at once; ``submit`` → handle; ``done``/``result`` per handle; ``interrupt`` all (clean
    stop), ``kill`` all (now)."""

    slots: int

    def submit(self, job: CellJob) -> Any: ...

    def done(self, handle: Any) -> bool: ...

    def result(self, handle: Any, job: CellJob) -> JobResult: ...

    def interrupt(self) -> None: ...

    def kill(self) -> None: ...

    def close(self) -> None: ...


class LocalLauncher:
    """Up to ``jobs`` cells at once as child processes of this machine (one watcher thread each)."""

    def __init__(self, jobs: int):
        self.slots = jobs
        self.stop = Stop()
        self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep-cell")

    def submit(self, job: CellJob) -> Future:
        return self.pool.submit(execute, job, self.stop)

    def done(self, handle: Future) -> bool:
        return handle.done()

    def result(self, handle: Future, job: CellJob) -> JobResult:
        try:
            return handle.result()
        except Exception as exc:  # noqa: BLE001 - a cell's failure never stops the sweep
            return JobResult(job.cell, rc=1, message=f"{exc.__class__.__name__}: {exc}")

    def interrupt(self) -> None:
        self.stop.requested.set()

    def kill(self) -> None:
        self.stop.kill.set()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class SubmititLauncher:
    """Cells as submitit jobs: ``cluster="slurm"`` on a cluster, ``"local"`` (child processes here) for tests."""

    def __init__(self, folder: Path, cluster: str, slots: int, partition: str = "", time_min: int = 240,
                 gpus: int = 0, cpus: int = 4):
        try:
            import submitit
        except ModuleNotFoundError:
            raise UsageError("--launcher slurm needs submitit: pip install 'sparsecap[slurm]'") from None
        self.slots = slots
        try:
            self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        except RuntimeError as exc:  # e.g. no ``srun``: not on a Slurm cluster
            raise UsageError(f"--launcher slurm: {exc}") from None
        params: dict[str, Any] = {"timeout_min": int(time_min), "name": "sparsecap-sweep"}
        if cluster == "slurm":
            params.update(cpus_per_task=int(cpus), gpus_per_node=int(gpus))
            if partition:
                params["slurm_partition"] = partition
        self.executor.update_parameters(**params)
        self.handles: list[Any] = []

    def submit(self, job: CellJob) -> Any:
        handle = self.executor.submit(execute, job)
        self.handles.append(handle)
        return handle

    def done(self, handle: Any) -> bool:
        return handle.done()

    def result(self, handle: Any, job: CellJob) -> JobResult:
        try:
            return handle.result()
        except Exception as exc:  # noqa: BLE001 - a failed or cancelled job is a failed cell
            first = (str(exc).strip().splitlines() or [""])[-1]
            return JobResult(job.cell, rc=1, message=f"submitit job {handle.job_id}: {first[:300]}")

    def interrupt(self) -> None:
        for handle in self.handles:
            if not handle.done():
                try:
                    handle.cancel(check=False)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass

    def kill(self) -> None:
        self.interrupt()

    def close(self) -> None:
        pass


def make_launcher(name: str, folder: Path, jobs: int, partition: str = "", time_min: int = 240, gpus: int = 0,
                  cpus: int = 4) -> Launcher:
    """``local`` | ``slurm`` | ``submitit-local`` (submitit's local executor: the Slurm code path, on this machine)."""
    if name == "local":
        return LocalLauncher(jobs)
    if name == "slurm":
        return SubmititLauncher(folder / "slurm", "slurm", 10_000, partition, time_min, gpus, cpus)
    if name == "submitit-local":
        return SubmititLauncher(folder / "slurm", "local", jobs, time_min=time_min)
    raise UsageError(f"unknown launcher {name!r}; choose from local, slurm")
