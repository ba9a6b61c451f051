"""``MonitorApp``: the Textual app behind ``sparsecap monitor`` and ``sparsecap train --tui``."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from sparsecap_cli.tui.attach import JobHandle
from sparsecap_cli.tui.screens import HELP, HelpScreen, RunScreen, RunsScreen, StopScreen
from sparsecap_cli.tui.sweep import SweepScreen, SweepsScreen
from sparsecap_cli.tui.widgets import StatusLine
from sparsecap_engine.monitor_roots import MonitorKind
from sparsecap_engine.sweep_state import Clock


class MonitorApp(App[str | None]):
    """Follow one run (``kind="run"``), a root of runs (``kind="root"``), a sweep folder (``kind="sweep"``) or a
    folder of sweeps (``kind="sweeps"``). ``clock`` dates the running cells of a sweep (tests fix it).

    With a ``job`` attached (``train --tui``), quitting asks whether to stop the job or detach from it; the app's
    return value is ``"stopped"``, ``"detach"`` or None.
    """

    CSS_PATH = "monitor.tcss"
    TITLE = "sparsecap monitor"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(
        self,
        path: Path,
        kind: MonitorKind = "run",
        interval: float = 0.5,
        job: JobHandle | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.kind = kind
        self.interval = interval
        self.job = job
        self.clock = clock
        self._job_seen_done = False

    def get_default_screen(self) -> Screen:
        if self.kind == "root":
            return RunsScreen(self.path, self.interval)
        if self.kind == "sweep":
            return SweepScreen(self.path, self.interval, clock=self.clock)
        if self.kind == "sweeps":
            return SweepsScreen(self.path, self.interval, clock=self.clock)
        note = "job attached · q: stop or detach" if self.job is not None else ""
        return RunScreen(self.path, self.interval, note=note)

    def on_mount(self) -> None:
        if self.job is not None:
            self.set_interval(self.interval, self.check_job)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):  # the help of the screen it is asked on
            self.push_screen(HelpScreen(getattr(self.screen, "HELP", HELP)))

    async def action_quit(self) -> None:
        if self.job is None or self.job.done:
            self.exit("stopped" if self.job is not None and self.job.stopping else None)
            return
        if self.job.stopping:
            self.notify("already stopping: the job is saving a checkpoint")
            return
        if not isinstance(self.screen, StopScreen):
            self.push_screen(StopScreen(), self._on_stop_choice)

    def _on_stop_choice(self, choice: str | None) -> None:
        if choice == "detach":
            self.exit("detach")
        elif choice == "stop" and self.job is not None:
            self.job.stop()
            self._note("stopping: finishing the step, validating and saving a checkpoint…")
            self.check_job()

    def _note(self, text: str) -> None:
        for line in self.query(StatusLine):
            line.note = text
        for screen in self.screen_stack:
            for line in screen.query(StatusLine):
                line.note = text

    def check_job(self) -> None:
        """Exit once a stopped job is done; say so once when a job ends by itself (or fails)."""
        job = self.job
        if job is None or not job.done:
            return
        if job.stopping:
            self.exit("stopped")
            return
        if not self._job_seen_done:
            self._job_seen_done = True
            if job.error is not None:
                self._note(f"job failed: {job.error}")
                self.notify(f"job failed: {job.error}", severity="error", timeout=10)
            else:
                self._note("job finished — q quits")
