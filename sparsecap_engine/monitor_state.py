"""Follow a run's ``events.jsonl`` and fold it into a summarised state — the model behind ``sparsecap monitor``.

No UI here: the TUI and the plain-text snapshot render a :class:`RunState`; both only read run directories.

* :class:`~sparsecap_engine.event_tail.EventTail` reads the log incrementally.
* :class:`RunWatch` folds new events into a :class:`RunState` (curves, latest metrics, sparsity layers, samples,
  status-line data). Folding is per event and cheap, rendering is per poll: a 100,000-event log opens in well under
  a second.
* :mod:`sparsecap_engine.monitor_roots` lists a root of runs and tells a run from a sweep; a sweep's state lives in
  :mod:`sparsecap_engine.sweep_state`.
"""

from __future__ import annotations

import math
import time
import tomllib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecap_engine.event_tail import EVENTS_FILE, EventTail

CONFIG_FILE = "config.toml"


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
        if isinstance(v := get("sparsity"), _NUM):  # pruning runs log it at every log step
            self.sparsity_curve.add(step, float(v))
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
        curve = self.sparsity_curve
        if self.sparsity.overall is not None and (not curve.steps or curve.steps[-1] != step):
            curve.add(step, self.sparsity.overall)  # once per step: that step's train event may have given it
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


#: how often a watch looks up a running run's process; after how long a silent run it cannot look up is ``stale``
LIVENESS_EVERY_S, STALE_AFTER_S = 5.0, 900.0


class RunWatch:
    """Tail one run directory's event log into a :class:`RunState`. ``poll()`` → True when something changed.

    ``light=True`` (the runs listing) parses only the last train event of each poll: status, step, best CIDEr-D and
    sparsity stay exact while train curves are not kept.
    """

    def __init__(self, run_dir: Path, light: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.run_dir = Path(run_dir)
        self.light = light
        self.tail = EventTail(self.run_dir / EVENTS_FILE, skip_train=light)
        self.state = self._fresh()
        self.clock = clock
        self._checked = -math.inf

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
        if state.status in ("running", "stale") and self.clock() - self._checked >= LIVENESS_EVERY_S:
            changed = self._check_alive(state) or changed
        return changed or bool(events)

    def _check_alive(self, state: RunState) -> bool:
        """A run with no ``run_end`` whose process is gone is ``crashed``; one whose process cannot be looked up here
        (another host) and whose log has been silent for ``STALE_AFTER_S`` is ``stale`` (a later event makes it
        ``running`` again). True when the status changed."""
        from sparsecap_engine.runs import holder_alive

        now = self.clock()
        self._checked = now
        alive = holder_alive(self.run_dir)
        before = state.status
        if alive is False:
            state.status, state.message = "crashed", "its process is gone without a run_end (killed, or the machine " \
                                                     "stopped): resume it with --resume"
        elif alive is None:
            try:
                quiet = now - (self.run_dir / EVENTS_FILE).stat().st_mtime
            except OSError:
                quiet = 0.0
            if quiet >= STALE_AFTER_S:
                state.status = "stale"
                state.message = f"no event for {quiet / 60:.0f} min (its process runs elsewhere or has died)"
        if state.status != before:
            state._bump("status")
            return True
        return False


def _read_config(run_dir: Path) -> dict[str, Any]:
    """config.toml of a run that has not written ``run_start`` yet ({} when absent or unreadable)."""
    try:
        with (run_dir / CONFIG_FILE).open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def load_state(run_dir: Path, light: bool = False) -> RunState:
    """Fold a run's whole log once (the ``--once``/``--json`` snapshot)."""
    watch = RunWatch(run_dir, light=light)
    watch.poll()
    return watch.state
