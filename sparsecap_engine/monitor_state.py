"""Follow a run's ``events.jsonl`` and fold it into a summarised state — the model behind ``sparsecap monitor``.

No UI here: the TUI and the plain-text snapshot render a :class:`RunState`; both only read run directories.

* :class:`EventTail` reads the log incrementally: a missing file waits, a half-written last line is retried on the
  next poll, malformed lines are skipped and counted, a replaced/truncated log starts over.
* :class:`RunWatch` folds new events into a :class:`RunState` (curves, latest metrics, sparsity layers, samples,
  status-line data). Folding is per event and cheap, rendering is per poll: a 100,000-event log opens in well under
  a second.
* :func:`resolve_monitor_path`, :func:`find_runs`, :class:`RunsWatch` list a root of runs (status, model, method,
  target sparsity, best CIDEr-D). :func:`resolve_monitor_path` also recognises a sweep folder (``plan.json`` of format
  ``sparsecap-sweep/1``) and a folder of sweeps; their state lives in :mod:`sparsecap_engine.sweep_state`.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sparsecap_engine.errors import RunError

EVENTS_FILE = "events.jsonl"
CONFIG_FILE = "config.toml"
PLAN_FILE = "plan.json"  # a sweep folder's plan (see sparsecap_engine.sweep_state)
SWEEP_FORMAT = "sparsecap-sweep/1"
_TRAIN_PREFIX = b'{"kind": "train"'  # how EventLog starts every train line (fast path of the runs listing)


class EventTail:
    """Incremental reader of an append-only JSONL file.

    ``poll()`` returns the complete, well-formed events appended since the last call. A last line without its
    newline is left for the next poll (``pending`` bytes); a complete line that is not a JSON object is skipped and
    counted in ``malformed``. When the file is replaced or truncated, ``restarted`` is set and reading starts over.
    """

    def __init__(self, path: Path, skip_train: bool = False) -> None:
        self.path = Path(path)
        self.offset = 0
        self.pending = 0
        self.malformed = 0
        self.restarted = False
        self.skip_train = skip_train
        self._inode: int | None = None

    def poll(self) -> list[dict[str, Any]]:
        """New complete events since the last poll ([] while the file does not exist)."""
        self.restarted = False
        try:
            with self.path.open("rb") as f:
                st = os.fstat(f.fileno())
                if (self._inode is not None and st.st_ino != self._inode) or st.st_size < self.offset:
                    self.offset, self.pending, self.malformed, self.restarted = 0, 0, 0, True
                self._inode = st.st_ino
                if st.st_size == self.offset:
                    self.pending = 0
                    return []
                f.seek(self.offset)
                data = f.read()
        except OSError:  # not there yet (or unreadable for now): wait
            return []
        end = data.rfind(b"\n")
        self.pending = len(data) - end - 1
        if end < 0:
            return []
        self.offset += end + 1
        return self._parse(data[: end + 1].split(b"\n")[:-1])

    def _parse(self, lines: list[bytes]) -> list[dict[str, Any]]:
        if self.skip_train:  # light mode: of the train lines only the last one, in its place in the order
            last = -1
            for i, line in enumerate(lines):
                if line.startswith(_TRAIN_PREFIX):
                    last = i
            lines = [line for i, line in enumerate(lines) if i == last or not line.startswith(_TRAIN_PREFIX)]
        lines = [line for line in lines if line and not line.isspace()]
        return [e for e in self._load_many(lines) if e is not None]

    def _load_many(self, lines: list[bytes]) -> list[dict[str, Any] | None]:
        """Parse lines as one JSON array when each looks like an object (about 2× faster), else line by line."""
        if lines and all(line[:1] == b"{" and line.rstrip()[-1:] == b"}" for line in lines):
            try:
                items = json.loads(b"[" + b",".join(lines) + b"]")
            except ValueError:
                items = None
            if items is not None and len(items) == len(lines):
                good = [e for e in items if e.__class__ is dict and e.get("kind").__class__ is str]
                self.malformed += len(items) - len(good)
                return good
        return [self._load(line) for line in lines]

    def _load(self, line: bytes) -> dict[str, Any] | None:
        try:
            event = json.loads(line)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            self.malformed += 1
            return None
        return self._check(event)

    def _check(self, event: Any) -> dict[str, Any] | None:
        if isinstance(event, dict) and isinstance(event.get("kind"), str):
            return event
        self.malformed += 1
        return None


@dataclass
class Series:
    """One curve: values by step."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def downsample(self, n: int) -> Series:
        """At most ``n`` evenly spaced points, first and last kept."""
        if len(self) <= n or n < 2:
            return Series(list(self.steps), list(self.values))
        idx = [round(i * (len(self) - 1) / (n - 1)) for i in range(n)]
        return Series([self.steps[i] for i in idx], [self.values[i] for i in idx])

    def to_dict(self, points: int | None = None) -> dict[str, Any]:
        s = self.downsample(points) if points else self
        return {"steps": s.steps, "values": s.values, "points": len(self)}


@dataclass
class SparsityState:
    """The latest ``sparsity`` event: overall vs target, per-layer sparsity, plus any other scalar fields."""

    step: int = 0
    overall: float | None = None
    target: float | None = None
    layers: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


_NUM = (int, float)
_SPARSITY_KEYS = {"kind", "time", "step", "overall", "target", "layers"}


@dataclass
class RunState:
    """Everything the monitor shows about one run, folded from its events."""

    name: str
    path: str
    status: str = "waiting"  # waiting | running | completed | stopped | interrupted | failed | …
    message: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    device: str = ""
    params: int | None = None
    train_images: int | None = None
    step: int = 0
    epoch: float | None = None
    loss: float | None = None
    lr: float | None = None
    items_per_s: float | None = None
    curves: dict[str, Series] = field(default_factory=lambda: {"loss": Series(), "lr": Series()})
    val: dict[str, Series] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_step: int | None = None
    best_step: int | None = None
    best_cider: float | None = None
    sparsity: SparsityState | None = None
    sparsity_curve: Series = field(default_factory=Series)
    samples: list[dict[str, Any]] = field(default_factory=list)
    samples_step: int | None = None
    checkpoint: dict[str, Any] | None = None
    events: int = 0
    malformed: int = 0  # lines skipped: not JSON objects, or events of a known kind with bad fields
    bad_events: int = 0
    unknown: int = 0
    start_time: float | None = None
    last_time: float | None = None
    versions: dict[str, int] = field(default_factory=dict)
    tick: int = 0  # bumped on every change; versions[part] = tick of its last change
    _rate: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=20), repr=False)

    # ---- derived -------------------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int | None:
        steps = self.config.get("train", {}).get("steps")
        return int(steps) if isinstance(steps, int | float) else None

    @property
    def model_name(self) -> str:
        return str(self.model.get("name") or self.config.get("model", {}).get("name") or "")

    @property
    def method(self) -> str:
        prune = self.config.get("prune") or {}
        return str(prune.get("method") or ("dense" if self.config else ""))

    @property
    def target(self) -> float | None:
        if self.sparsity is not None and self.sparsity.target is not None:
            return self.sparsity.target
        prune = self.config.get("prune") or {}
        for key in ("sparsity", "target", "target_sparsity"):
            if isinstance(prune.get(key), int | float):
                return float(prune[key])
        return None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def steps_per_s(self) -> float | None:
        """Steps per second over the last train events (validation pauses included), else from items/s."""
        if len(self._rate) >= 2:
            (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
            if t1 > t0 and s1 > s0:
                return (s1 - s0) / (t1 - t0)
        if self.items_per_s:
            per_step = self.config.get("train", {}).get("batch_size", 0) * self.config.get("data", {}).get(
                "seq_per_img", 1
            )
            if per_step:
                return self.items_per_s / per_step
        return None

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current pace (None when finished or unknown)."""
        total, rate = self.total_steps, self.steps_per_s
        if not self.running or total is None or not rate:
            return None
        return max(0.0, (total - self.step) / rate)

    @property
    def elapsed_s(self) -> float | None:
        if self.start_time is None or self.last_time is None:
            return None
        return self.last_time - self.start_time

    def curve(self, name: str) -> Series | None:
        """A curve by name: ``loss``, ``lr``, a validation metric, or ``sparsity`` (overall, per evaluation)."""
        if name in self.curves:
            return self.curves[name]
        if name in self.val:
            return self.val[name]
        if name == "sparsity" and len(self.sparsity_curve):
            return self.sparsity_curve
        return None

    def curve_names(self) -> list[str]:
        names = list(self.curves) + list(self.val)
        return names + (["sparsity"] if len(self.sparsity_curve) else [])

    # ---- folding -------------------------------------------------------------------------------------------
    def _bump(self, *parts: str) -> None:
        """Mark parts of the view as changed (panes redraw when the versions of their parts move)."""
        self.tick = tick = self.tick + 1
        for part in parts:
            self.versions[part] = tick

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event. Unknown kinds are counted, never fatal (the event log is extended, not broken)."""
        self.events += 1
        t = event.get("time")
        if isinstance(t, _NUM):
            if self.start_time is None:
                self.start_time = t
            self.last_time = t
        step = event.get("step")
        if step.__class__ is not int:
            step = int(step) if isinstance(step, _NUM) and math.isfinite(step) else self.step
        handler = _HANDLERS.get(event["kind"])
        if handler is None:
            self.unknown += 1
            return
        try:
            handler(self, event, step)
        except (TypeError, ValueError, AttributeError, KeyError):
            self.bad_events += 1

    def _on_run_start(self, e: dict[str, Any], step: int) -> None:
        self.status = "running"
        self.message = ""
        self.config = e.get("config") or self.config
        self.model = e.get("model") or self.model
        self.device = str(e.get("device", self.device))
        self.params = e.get("params", self.params)
        self.train_images = e.get("train_images", self.train_images)
        self.step = max(self.step, step)
        self._bump("status", "config")

    def _on_train(self, e: dict[str, Any], step: int) -> None:  # the hot path: most events are train events
        if self.status != "running":  # the first train event, or a resumed run
            self.status, self.message = "running", ""
        self.step = step
        get = e.get
        if (v := get("epoch")) is not None:
            self.epoch = float(v)
        if (v := get("loss")) is not None:
            self.loss = v = float(v)
            curve = self.curves["loss"]
            curve.steps.append(step)
            curve.values.append(v)
        if (v := get("lr")) is not None:
            self.lr = v = float(v)
            curve = self.curves["lr"]
            curve.steps.append(step)
            curve.values.append(v)
        if (v := get("items_per_s")) is not None:
            self.items_per_s = float(v)
        if isinstance(v := get("time"), _NUM):
            self._rate.append((v, step))
        self.tick = tick = self.tick + 1
        self.versions["status"] = self.versions["curves"] = tick

    def _on_val(self, e: dict[str, Any], step: int) -> None:
        metrics = {k: float(v) for k, v in (e.get("metrics") or {}).items() if isinstance(v, int | float)}
        for name, value in metrics.items():
            self.val.setdefault(name, Series()).add(step, value)
        self.metrics, self.metrics_step = metrics, step
        self.step = max(self.step, step)
        self._bump("status", "curves", "metrics")

    def _on_samples(self, e: dict[str, Any], step: int) -> None:
        self.samples = [item for item in e.get("items") or [] if isinstance(item, dict)]
        self.samples_step = step
        self._bump("samples")

    def _on_sparsity(self, e: dict[str, Any], step: int) -> None:
        layers: dict[str, float] = {}
        for name, value in (e.get("layers") or {}).items():
            if isinstance(value, dict):
                value = value.get("sparsity")
            if isinstance(value, int | float):
                layers[str(name)] = float(value)
        overall = e.get("overall")
        target = e.get("target")
        extra = {k: v for k, v in e.items() if k not in _SPARSITY_KEYS and isinstance(v, int | float | str | bool)}
        self.sparsity = SparsityState(
            step=step,
            overall=float(overall) if isinstance(overall, int | float) else None,
            target=float(target) if isinstance(target, int | float) else None,
            layers=layers,
            extra=extra,
        )
        if self.sparsity.overall is not None:
            self.sparsity_curve.add(step, self.sparsity.overall)
        self._bump("sparsity", "curves")

    def _on_checkpoint(self, e: dict[str, Any], step: int) -> None:
        self.checkpoint = {"path": str(e.get("path", "")), "step": step, "best": bool(e.get("best"))}
        if e.get("best") and "CIDEr-D" in self.metrics and self.metrics_step == step:
            self.best_cider, self.best_step = self.metrics["CIDEr-D"], step
        self._bump("status")

    def _on_run_end(self, e: dict[str, Any], step: int) -> None:
        self.status = str(e.get("status") or "completed")
        self.message = str(e.get("message") or "")
        if e.get("best_cider") is not None:
            self.best_cider = float(e["best_cider"])
            self.best_step = e.get("best_step")
        self.step = max(self.step, step)
        self._bump("status")

    # ---- output --------------------------------------------------------------------------------------------
    def to_dict(self, points: int = 200) -> dict[str, Any]:
        """A JSON-ready summary; curves downsampled to at most ``points`` points (``points`` keeps the full count)."""
        sp = self.sparsity
        return {
            "name": self.name,
            "path": self.path,
            "status": self.status,
            "message": self.message,
            "model": self.model_name,
            "method": self.method,
            "target_sparsity": self.target,
            "device": self.device,
            "params": self.params,
            "train_images": self.train_images,
            "step": self.step,
            "total_steps": self.total_steps,
            "epoch": self.epoch,
            "loss": self.loss,
            "lr": self.lr,
            "items_per_s": self.items_per_s,
            "eta_s": self.eta_s,
            "elapsed_s": self.elapsed_s,
            "metrics": self.metrics,
            "metrics_step": self.metrics_step,
            "best_step": self.best_step,
            "best_cider": self.best_cider,
            "checkpoint": self.checkpoint,
            "curves": {name: s.to_dict(points) for name, s in {**self.curves, **self.val}.items()},
            "sparsity": None
            if sp is None
            else {
                "step": sp.step,
                "overall": sp.overall,
                "target": sp.target,
                "layers": sp.layers,
                **sp.extra,
                "history": self.sparsity_curve.to_dict(points),
            },
            "samples": self.samples,
            "samples_step": self.samples_step,
            "events": self.events,
            "malformed": self.malformed,
            "unknown": self.unknown,
            "config": self.config,
        }


_HANDLERS = {
    "run_start": RunState._on_run_start,
    "train": RunState._on_train,
    "val": RunState._on_val,
    "samples": RunState._on_samples,
    "sparsity": RunState._on_sparsity,
    "checkpoint": RunState._on_checkpoint,
    "run_end": RunState._on_run_end,
}


class RunWatch:
    """Tail one run directory's event log into a :class:`RunState`. ``poll()`` → True when something changed.

    ``light=True`` (the runs listing) parses only the last train event of each poll: status, step, best CIDEr-D and
    sparsity stay exact while train curves are not kept.
    """

    def __init__(self, run_dir: Path, light: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.light = light
        self.tail = EventTail(self.run_dir / EVENTS_FILE, skip_train=light)
        self.state = self._fresh()

    def _fresh(self) -> RunState:
        return RunState(name=self.run_dir.name, path=str(self.run_dir))

    def poll(self) -> bool:
        events = self.tail.poll()
        changed = self.tail.restarted
        if self.tail.restarted:
            self.state = self._fresh()
        state = self.state
        apply = state.apply
        for event in events:
            apply(event)
        if self.light:
            state.curves = {"loss": Series(), "lr": Series()}
        if not state.config:
            state.config = _read_config(self.run_dir)
            changed = changed or bool(state.config)
        malformed = self.tail.malformed + state.bad_events
        if malformed != state.malformed:
            state.malformed, changed = malformed, True
            state._bump("status")
        return changed or bool(events)


def _read_config(run_dir: Path) -> dict[str, Any]:
    """config.toml of a run that has not written ``run_start`` yet ({} when absent or unreadable)."""
    try:
        with (run_dir / CONFIG_FILE).open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


# ---- roots of runs (and sweeps) -------------------------------------------------------------------------------
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


def load_state(run_dir: Path, light: bool = False) -> RunState:
    """Fold a run's whole log once (the ``--once``/``--json`` snapshot)."""
    watch = RunWatch(run_dir, light=light)
    watch.poll()
    return watch.state


def list_runs(root: Path) -> list[RunSummary]:
    """Summaries of every run under ``root``."""
    watch = RunsWatch(root)
    watch.poll()
    return watch.summaries()
