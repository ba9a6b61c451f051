"""``sparsecap sweep`` planning: a grid of methods × sparsities on one base config, as cells with exact commands.

Step budgets (D = the base config's ``train.steps``, F = ``SweepOptions.finetune_steps``, default D // 3):

- ``dense``: ``sparsecap train`` for D steps, once (magnitude and lottery start from it);
- ``supermask``, ``gradual``, ``snip``: train with pruning from scratch for D + F steps — the same total budget as
  dense + fine-tune;
- ``magnitude``: one-shot uniform magnitude pruning of the dense run, then F fine-tune steps;
- ``lottery``: masks by uniform magnitude of the dense run, weights rewound to its init, retrained for D + F steps.

Each cell is an ordinary run directory ``<sweep>/<cell id>/`` made by one ``sparsecap train|prune`` command whose
config file is ``<sweep>/configs/<cell id>.toml``. The folder format is ``sparsecap-sweep/1`` (plan.json, events.jsonl,
results.json/.csv/.md, plots/); planning here is pure and fast, running is ``sweep_run.py``.
"""

from __future__ import annotations

import copy
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecap_engine.atomic import atomic_write_text
from sparsecap_engine.config import RunConfig, read_toml, to_toml
from sparsecap_engine.errors import UsageError
from sparsecap_engine.runs import LOCK_NAME, read_events

FORMAT = "sparsecap-sweep/1"
SWEEP_METHODS = ("dense", "supermask", "gradual", "magnitude", "lottery", "snip")
DEFAULT_SPARSITY = (0.95, 0.975, 0.9875, 0.991)
#: methods that prune the trained dense run (and so depend on the ``dense`` cell)
FROM_DENSE = ("magnitude", "lottery")
LAUNCHERS = ("local", "slurm", "submitit-local")
#: test-split metrics every cell is scored with (pycocoevalcap names; SPICE off)
METRICS = ("bleu", "meteor", "rouge", "cider")
#: cell statuses that count as done: rerunning the sweep skips such cells
FINAL = ("completed", "target-missed")
#: the file a running sweep holds locked (one sweep process per folder)
#: the packaged base config used when the user gives no ``--config``
DEFAULT_CONFIG = Path(__file__).with_name("sweep_default.toml")


@dataclass
class SweepOptions:
    """What to sweep and how to run it (the base config and D come from the ``RunConfig``)."""

    methods: list[str] = field(default_factory=lambda: list(SWEEP_METHODS))
    sparsity: list[float] = field(default_factory=lambda: list(DEFAULT_SPARSITY))
    #: fine-tune steps F; ``None`` → D // 3
    finetune_steps: int | None = None
    #: local launcher: cells run at once (threads are divided between them)
    jobs: int = 1
    launcher: str = "local"
    #: start the sweep again: rerun every cell (``--overwrite`` on existing run directories), even if the plan changed
    overwrite: bool = False
    slurm_partition: str = ""
    slurm_time: int = 240
    slurm_gpus: int = 0
    slurm_cpus: int = 4
    #: test-split metrics (a subset of bleu, meteor, rouge, cider; METEOR's Java start-up is the slow one)
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    #: the command that stands for ``sparsecap`` when cells run (tests substitute a fake)
    executable: list[str] = field(default_factory=lambda: [sys.executable, "-m", "sparsecap_cli"])

    def check(self) -> None:
        if not self.methods:
            raise UsageError("--methods is empty; choose from " + ", ".join(SWEEP_METHODS))
        unknown = [m for m in self.methods if m not in SWEEP_METHODS]
        if unknown:
            raise UsageError(f"unknown sweep method {unknown[0]!r}; choose from {', '.join(SWEEP_METHODS)}")
        if any(m != "dense" for m in self.methods):
            if not self.sparsity:
                raise UsageError("--sparsity is empty; give e.g. 0.95,0.975")
            bad = [s for s in self.sparsity if not 0.0 < s < 1.0]
            if bad:
                raise UsageError(f"--sparsity values must be in (0, 1), got {bad[0]:g}")
        if self.finetune_steps is not None and not 1 <= self.finetune_steps <= 2**62:
            raise UsageError(f"--finetune-steps must be at least 1 (and of a sensible size), got {self.finetune_steps}")
        if not 1 <= self.jobs <= 1024:
            raise UsageError(f"--jobs must be between 1 and 1024, got {self.jobs}")
        for flag, value, low in (("--slurm-time", self.slurm_time, 1), ("--slurm-gpus", self.slurm_gpus, 0),
                                 ("--slurm-cpus", self.slurm_cpus, 1)):
            if value < low:
                raise UsageError(f"{flag} must be at least {low}, got {value}")
        bad_metrics = [m for m in self.metrics if m not in METRICS]
        if bad_metrics or not self.metrics:
            raise UsageError(f"--metrics must be a comma list of {', '.join(METRICS)}, got {bad_metrics or 'none'}")
        if self.launcher not in LAUNCHERS:
            raise UsageError(f"unknown launcher {self.launcher!r}; choose from local, slurm")


@dataclass
class Cell:
    """One run of the grid: its id (= run directory name), method, target sparsity, steps and exact command."""

    id: str
    method: str
    sparsity: float
    steps: int
    budget: str
    depends: list[str]
    argv: list[str]
    config: dict[str, Any]
    #: the sweep folder (the cells' ``--runs-root``)
    folder: str = ""

    @property
    def run(self) -> str:
        """The run directory, relative to the sweep folder."""
        return self.id

    @property
    def kind(self) -> str:
        """``train`` (the dense baseline) or ``prune``."""
        return "train" if self.method == "dense" else "prune"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "method": self.method, "sparsity": self.sparsity, "run": self.run,
                "steps": self.steps, "budget": self.budget, "depends": list(self.depends), "argv": list(self.argv),
                "config": self.config}


@dataclass
class SweepPlan:
    """The resolved grid: base config, step budgets and cells (dense first, then method by method)."""

    name: str
    folder: Path
    methods: list[str]
    sparsity: list[float]
    dense_steps: int
    finetune_steps: int
    base_config: RunConfig
    cells: list[Cell]
    created: float = field(default_factory=time.time)

    @property
    def budget(self) -> dict[str, int]:
        d, f = self.dense_steps, self.finetune_steps
        return {"dense": d, "finetune": f, "prune_train": d + f, "lottery_retrain": d + f}

    def cell(self, cell_id: str) -> Cell:
        return next(c for c in self.cells if c.id == cell_id)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "created": self.created, "methods": list(self.methods),
                "sparsity": list(self.sparsity), "budget": self.budget, "base_config": self.base_config.to_dict(),
                "cells": [c.to_dict() for c in self.cells]}


def cell_id(method: str, sparsity: float) -> str:
    return "dense" if method == "dense" else f"{method}-{sparsity:g}"


def budget_text(method: str, d: int, f: int) -> str:
    """The human step budget of a method, as the results table states it."""
    if method == "dense":
        return f"dense {d}"
    if method == "magnitude":
        return f"dense {d} + fine-tune {f}"
    if method == "lottery":
        return f"dense {d} + retrain {d + f} from the dense init"
    return f"train with pruning {d + f} (= dense {d} + fine-tune {f})"


def config_path(folder: Path, cid: str) -> Path:
    return Path(folder) / "configs" / f"{cid}.toml"


def plan_sweep(base: RunConfig, folder: Path, opts: SweepOptions, name: str | None = None) -> SweepPlan:
    """The cells of ``opts.methods`` × ``opts.sparsity`` on ``base`` (D = ``base.train.steps``); no I/O."""
    opts.check()
    folder = Path(folder)
    d = int(base.train.steps)
    f = int(opts.finetune_steps if opts.finetune_steps is not None else d // 3)
    if d < 1:
        raise UsageError(f"dense steps (--steps / train.steps) must be at least 1, got {d}")
    methods = list(dict.fromkeys(opts.methods))
    sparsity = list(dict.fromkeys(float(s) for s in opts.sparsity))
    pruning = [m for m in methods if m != "dense"]
    if pruning and f < 1:
        raise UsageError(f"fine-tune steps must be at least 1 (D // 3 = {f} for D = {d}); give --finetune-steps")
    needs_dense = "dense" in methods or any(m in FROM_DENSE for m in methods)
    cells: list[Cell] = []
    if needs_dense:
        cells.append(_cell(base, folder, "dense", 0.0, d, f))
    for method in pruning:
        for s in sparsity:
            cells.append(_cell(base, folder, method, s, d, f))
    return SweepPlan(name or folder.name, folder, methods, sparsity if pruning else [], d, f, copy.deepcopy(base),
                     cells)


def _cell(base: RunConfig, folder: Path, method: str, s: float, d: int, f: int) -> Cell:
    cid = cell_id(method, s)
    cfg = RunConfig.from_dict(copy.deepcopy(base.to_dict()))
    steps = d if method == "dense" else f if method == "magnitude" else d + f
    cfg.train.steps = steps
    depends: list[str] = []
    common = ["--config", str(config_path(folder, cid)), "--name", cid, "--runs-root", str(folder)]
    if method == "dense":
        cfg.prune = {}
        argv = ["sparsecap", "train", *common, "--steps", str(steps), "--quiet"]
    else:
        extra: list[str] = []
        cfg.prune = {**cfg.prune, "method": method, "sparsity": s}
        if method in FROM_DENSE:
            source = str(folder / "dense")
            cfg.prune.update(criterion="uniform", source=source)
            extra = ["--criterion", "uniform", "--from", source]
            depends = ["dense"]
        argv = ["sparsecap", "prune", *common, "--method", method, "--sparsity", f"{s:g}", *extra,
                "--steps", str(steps), "--quiet"]
    return Cell(cid, method, s if method != "dense" else 0.0, steps, budget_text(method, d, f), depends, argv,
                cfg.to_dict(), str(folder))


#: keys of a sweep config's optional ``[sweep]`` table (the grid; flags given on the command line win)
SWEEP_KEYS = ("methods", "sparsity", "finetune_steps", "metrics")


def base_config(config_file: Path | None = None) -> tuple[RunConfig, dict[str, Any]]:
    """The sweep's base run config and its ``[sweep]`` table: ``config_file``, else the packaged
    ``sweep_default.toml``. A ``[sweep]`` table holds the grid (``methods``, ``sparsity`` as lists, ``finetune_steps``,
    ``metrics``) so a file such as ``configs/coco/ud-sweep.toml`` describes a whole experiment."""
    path = Path(config_file) if config_file else DEFAULT_CONFIG
    data = read_toml(path)
    grid = data.pop("sweep", {})
    if not isinstance(grid, dict):
        raise UsageError(f"{path}: [sweep] must be a table, got {grid!r}")
    unknown = sorted(set(grid) - set(SWEEP_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown [sweep] key {unknown[0]!r}; valid keys: {', '.join(SWEEP_KEYS)}")
    for key, value in grid.items():
        if key == "finetune_steps":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str) or (isinstance(value, list) and all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value))
        if not ok:
            want = "an integer" if key == "finetune_steps" else "a comma string or a list"
            raise UsageError(f"{path}: [sweep] {key} must be {want}, got {value!r}")
    return RunConfig.from_dict(data, str(path)), grid


# --- the plan on disk -------------------------------------------------------------------------------------------


def read_plan(folder: Path) -> dict[str, Any] | None:
    """``plan.json`` of a sweep folder, or ``None`` when there is none."""
    path = Path(folder) / "plan.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8
        raise UsageError(f"{path}: unreadable plan (not JSON); use --overwrite to start the sweep again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path}: not a {FORMAT} plan; use another --name")
    return data


def plan_changes(plan: SweepPlan, old: dict[str, Any]) -> list[str]:
    """What differs between ``plan`` and an existing ``plan.json``: the grid, the budgets or the base config."""
    new = plan.to_dict()
    changes = []
    if sorted(c["id"] for c in new["cells"]) != sorted(c.get("id") for c in old.get("cells", [])):
        changes.append("cells (methods × sparsity)")
    if new["budget"] != old.get("budget"):
        changes.append("step budgets")
    if json.loads(json.dumps(new["base_config"])) != old.get("base_config"):
        changes.append("base config")
    return changes


def prepare_folder(plan: SweepPlan, overwrite: bool = False) -> dict[str, Any] | None:
    """Check the folder against an existing plan, then write ``plan.json`` and ``configs/<cell>.toml`` atomically.

    Returns the previous plan (``None`` for a new sweep). A changed grid or config is refused unless ``overwrite``;
    a non-empty folder that is not a sweep is refused."""
    folder = plan.folder
    old = read_plan(folder)
    if old is None and folder.is_dir() and any(p.name != LOCK_NAME for p in folder.iterdir()) and not overwrite:
        raise UsageError(f"{folder} exists and is not a sweep folder (no plan.json); use another --name")
    if old is not None and not overwrite:
        changes = plan_changes(plan, old)
        if changes:
            raise UsageError(f"sweep {folder} was planned with different {', '.join(changes)}; rerun with the same "
                             "options, or add --overwrite to start it again")
        plan.created = float(old.get("created", plan.created))
    for cell in plan.cells:
        atomic_write_text(config_path(folder, cell.id), to_toml(cell.config))
    atomic_write_text(folder / "plan.json", json.dumps(plan.to_dict(), indent=1))
    return old


# --- what a rerun does with each cell --------------------------------------------------------------------------


@dataclass(frozen=True)
class CellState:
    """What a previous sweep left of a cell: its result row's status and its run directory's state."""

    row_status: str | None = None
    run_exists: bool = False
    #: status of the run's last ``run_end`` event (None: the run never ended)
    run_end: str | None = None
    #: ``checkpoints/last.state.pt`` exists (a train run can ``--resume``)
    resumable: bool = False
    #: the run's outputs exist (train: a best/last checkpoint; prune: ``sparsity.json``)
    has_outputs: bool = False


@dataclass(frozen=True)
class Action:
    """What to do with a cell: ``skip`` (done), ``run`` (fresh), ``resume`` (``train``/``prune --resume``),
    ``restart`` (``--overwrite``: a lottery cell, made of rounds, or one without a trainer state starts again) or
    ``measure`` (the run finished but its results were not collected: evaluate, export and time it only)."""

    kind: str
    argv: list[str] | None = None


def cell_state(folder: Path, cell: Cell, rows: dict[str, dict[str, Any]]) -> CellState:
    """Read a cell's state from its result row and run directory."""
    run = Path(folder) / cell.run
    exists = run.is_dir() and any(run.iterdir())
    run_end = last_run_end(run)
    status = run_end.get("status") if run_end else None
    if cell.kind == "train":
        outputs = any((run / "checkpoints" / f"{w}.safetensors").is_file() for w in ("best", "last"))
    else:
        outputs = (run / "sparsity.json").is_file()
    row = rows.get(cell.id)
    return CellState(row.get("status") if row else None, exists, status,
                     (run / "checkpoints" / "last.state.pt").is_file(), outputs)


def last_run_end(run: Path) -> dict[str, Any] | None:
    """The last ``run_end`` event of a run directory (None when it has none)."""
    path = Path(run) / "events.jsonl"
    if not path.is_file():
        return None
    last = None
    for event in read_events(path):
        if event.get("kind") == "run_end":
            last = event
    return last


def decide(cell: Cell, state: CellState, overwrite: bool = False) -> Action:
    """The action for one cell on this (re)run of the sweep. Pure: unit-tested on fake states."""
    if overwrite:
        return Action("run", [*cell.argv, "--overwrite"] if state.run_exists else list(cell.argv))
    if state.row_status in FINAL and state.run_exists:
        return Action("skip")
    if not state.run_exists:
        return Action("run", list(cell.argv))
    if state.run_end in FINAL and state.has_outputs:
        return Action("measure")
    if state.resumable and cell.method != "lottery":
        command = "train" if cell.kind == "train" else "prune"
        return Action("resume", ["sparsecap", command, "--name", cell.id, "--runs-root", cell.folder, "--resume",
                                 "--quiet"])
    return Action("restart", [*cell.argv, "--overwrite"])


def threads_per_job(jobs: int, cpus: int | None = None) -> int:
    """Threads each of ``jobs`` parallel cells gets: the CPUs divided between them, at least 1."""
    import os

    return max(1, (cpus if cpus is not None else os.cpu_count() or 1) // max(1, jobs))


def thread_env(threads: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def with_threads(argv: list[str], threads: int) -> list[str]:
    """A training command with its thread count in the run config too."""
    return [*argv, "--set", f"train.num_threads={threads}"]


def dry_run_lines(plan: SweepPlan, threads: int) -> list[str]:
    """Each cell's exact command (with its thread settings), shell-quoted, dependencies first."""
    env = " ".join(f"{k}={v}" for k, v in thread_env(threads).items())
    return [f"{env} {shlex.join(with_threads(c.argv, threads))}" for c in plan.cells]
