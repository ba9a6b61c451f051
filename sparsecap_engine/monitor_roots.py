"""What ``sparsecap monitor PATH`` is pointed at — a run, a root of runs, a sweep folder (``plan.json`` of format
``sparsecap-sweep/1``) or a folder of sweeps — and the runs listing (status, model, method, target, best CIDEr-D)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sparsecap_engine.errors import RunError
from sparsecap_engine.event_tail import EVENTS_FILE
from sparsecap_engine.monitor_state import CONFIG_FILE, RunState, RunWatch

PLAN_FILE = "plan.json"  # a sweep folder's plan (see sparsecap_engine.sweep_state)
SWEEP_FORMAT = "sparsecap-sweep/1"


def sweep_format(path: Path) -> str | None:
    """The ``format`` of a sweep folder's plan.json (``sparsecap-sweep/…``), None when ``path`` is not a sweep."""
    try:
        plan = json.loads((Path(path) / PLAN_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    fmt = plan.get("format") if isinstance(plan, dict) else None
    return fmt if isinstance(fmt, str) and fmt.startswith("sparsecap-sweep/") else None


def is_sweep_dir(path: Path) -> bool:
    """A sweep folder holds a plan.json of a ``sparsecap-sweep/…`` format (its events.jsonl is the sweep's own)."""
    return (Path(path) / PLAN_FILE).is_file() and sweep_format(path) is not None


def is_run_dir(path: Path) -> bool:
    """A run directory holds config.toml or events.jsonl (and is not a sweep folder)."""
    return ((path / CONFIG_FILE).is_file() or (path / EVENTS_FILE).is_file()) and not is_sweep_dir(path)


def _children(root: Path) -> list[Path]:
    try:
        return sorted(p for p in Path(root).iterdir() if p.is_dir())
    except OSError:
        return []


def find_runs(root: Path) -> list[Path]:
    """Run directories directly under ``root``, by name."""
    return [p for p in _children(root) if is_run_dir(p)]


def find_sweeps(root: Path) -> list[Path]:
    """Sweep folders directly under ``root``, by name."""
    return [p for p in _children(root) if is_sweep_dir(p)]


MonitorKind = Literal["run", "root", "sweep", "sweeps"]


def _check_sweep(path: Path) -> tuple[MonitorKind, Path]:
    fmt = sweep_format(path)
    if fmt != SWEEP_FORMAT:
        raise RunError(f"unsupported sweep format {fmt} in {path / PLAN_FILE} (this sparsecap reads {SWEEP_FORMAT})")
    return "sweep", path


def resolve_monitor_path(path: Path) -> tuple[MonitorKind, Path]:
    """Is ``path`` one run, a folder of runs, a sweep folder or a folder of sweeps? A wrong path raises
    :class:`RunError` with a one-line message. A folder holding both runs and sweeps lists its runs."""
    path = Path(path)
    if path.name in (EVENTS_FILE, PLAN_FILE) and path.is_file():
        if is_sweep_dir(path.parent):
            return _check_sweep(path.parent)
        if path.name == EVENTS_FILE:
            return "run", path.parent
    if not path.exists():
        raise RunError(f"no run or runs folder at {path}")
    if not path.is_dir():
        raise RunError(f"not a run directory or a folder of runs: {path}")
    if is_sweep_dir(path):
        return _check_sweep(path)
    if is_run_dir(path):
        return "run", path
    if find_runs(path) or not any(path.iterdir()):
        return "root", path
    if find_sweeps(path):
        return "sweeps", path
    raise RunError(f"not a run directory or a folder of runs (no config.toml or events.jsonl): {path}")


@dataclass
class RunSummary:
    """One row of the runs list."""

    name: str
    path: str
    status: str
    model: str
    method: str
    target: float | None
    step: int
    total_steps: int | None
    best_cider: float | None
    best_step: int | None
    sparsity: float | None
    #: when the run started (its first event's time) and how long it ran or has been running (seconds)
    started: float | None = None
    duration_s: float | None = None
    #: why a run is crashed or stale (and a finished run's own message)
    message: str = ""

    @classmethod
    def of(cls, state: RunState) -> RunSummary:
        return cls(
            name=state.name,
            path=state.path,
            status=state.status,
            model=state.model_name,
            method=state.method,
            target=state.target,
            step=state.step,
            total_steps=state.total_steps,
            best_cider=state.best_cider,
            best_step=state.best_step,
            sparsity=state.sparsity.overall if state.sparsity else None,
            started=state.start_time,
            duration_s=state.elapsed_s,
            message=state.message,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def poll_each(watches: dict[str, Any], paths: list[Path], make: Callable[[Path], Any]) -> bool:
    """Keep ``watches`` (name → watch with ``poll()``) in step with ``paths``: drop the gone, ``make(path)`` the new,
    poll them all; True when anything changed."""
    changed = False
    found = {p.name: p for p in paths}
    for name in list(watches):
        if name not in found:
            del watches[name]
            changed = True
    for name, path in found.items():
        if name not in watches:
            watches[name] = make(path)
            changed = True
        changed = watches[name].poll() or changed
    return changed


class RunsWatch:
    """Follow every run under a root (new runs appear on the next poll), each with a light :class:`RunWatch`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.watches: dict[str, RunWatch] = {}

    def poll(self) -> bool:
        return poll_each(self.watches, find_runs(self.root), lambda path: RunWatch(path, light=True))

    def summaries(self) -> list[RunSummary]:
        return [RunSummary.of(w.state) for _, w in sorted(self.watches.items())]


def list_runs(root: Path) -> list[RunSummary]:
    """Summaries of every run under ``root``."""
    watch = RunsWatch(root)
    watch.poll()
    return watch.summaries()


#: runs-list sort keys, in the order ``s`` cycles through them (each with its natural direction first)
SORT_KEYS = ("started", "name", "status", "best CIDEr-D", "sparsity", "duration")
#: keys whose natural order is largest first (newest, best, sparsest, longest)
_DESCENDING = ("started", "best CIDEr-D", "sparsity", "duration")


def sort_runs(runs: list[RunSummary], key: str = "started", reverse: bool = False) -> list[RunSummary]:
    """Runs ordered by ``key`` (see :data:`SORT_KEYS`) in its natural direction (``reverse`` flips it); runs with no
    value for the key (never validated, not started) go last either way; ties by name."""
    if key not in SORT_KEYS:
        raise RunError(f"unknown sort key {key!r}; choose from {', '.join(SORT_KEYS)}")
    value: dict[str, Callable[[RunSummary], Any]] = {
        "started": lambda r: r.started,
        "name": lambda r: r.name.lower(),
        "status": lambda r: r.status,
        "best CIDEr-D": lambda r: r.best_cider,
        "sparsity": lambda r: r.sparsity,
        "duration": lambda r: r.duration_s,
    }
    get = value[key]
    known = sorted((r for r in runs if get(r) is not None), key=lambda r: r.name)
    known.sort(key=get, reverse=(key in _DESCENDING) != reverse)
    return known + sorted((r for r in runs if get(r) is None), key=lambda r: r.name)


def filter_runs(runs: list[RunSummary], query: str) -> list[RunSummary]:
    """Runs whose name, status, model or method contain every word of ``query`` (case-insensitive)."""
    words = query.lower().split()
    return [r for r in runs if all(w in f"{r.name} {r.status} {r.model} {r.method}".lower() for w in words)]
