"""Run a job (training, pruning) in a background thread with the monitor attached in the same terminal.

``run_with_monitor(job, run_dir)`` calls ``job(stop)`` in a thread, where ``stop()`` turns True once the user chose
*Stop* (the recipe then validates and saves a checkpoint before returning). Quitting the monitor asks: stop the job,
or detach from it (the monitor closes, the job runs on in this process until it ends; Ctrl-C then stops it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from sparsecap_cli.signals import StopSignals

R = TypeVar("R")
StopFlag = Callable[[], bool]


class JobHandle(Generic[R]):
    """A job running in a thread: its stop flag, result and error."""

    def __init__(self, job: Callable[[StopFlag], R], name: str = "sparsecap-job") -> None:
        self._stop = threading.Event()
        self.result: R | None = None
        self.error: BaseException | None = None
        self._job = job
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self._job(self._stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, re-raised there
            self.error = exc

    def start(self) -> JobHandle[R]:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the job to stop at its next check (it saves a checkpoint first)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def wait(self, echo: Callable[[str], Any] = print) -> R | None:
        """Block until the job ends; Ctrl-C asks it to stop (and waits for its checkpoint). Re-raises its error."""
        while self.thread.is_alive():
            try:
                self.thread.join(0.2)
            except KeyboardInterrupt:
                if self.stopping:
                    raise
                echo("stopping: validating and saving a checkpoint (Ctrl-C again to abort)…")
                self.stop()
        if self.error is not None:
            raise self.error
        return self.result


def run_with_monitor(
    job: Callable[[StopFlag], R],
    run_dir: Path,
    *,
    interval: float = 0.5,
    echo: Callable[[str], Any] = print,
    signals: StopSignals | None = None,
    on_detach: Callable[[], Any] | None = None,
    **run_options: Any,
) -> R | None:
    """Run ``job(stop)`` in a thread with the monitor of ``run_dir`` in this terminal; return the job's result.

    ``on_detach`` is called when the user detaches (the caller starts printing progress lines there).
    ``run_options`` go to ``App.run`` (tests pass ``headless=True, auto_pilot=…``). With ``signals`` installed, a
    Ctrl-C or SIGTERM while the job runs detached stops it like *Stop* (no KeyboardInterrupt inside
    ``Thread.join``, which in CPython 3.11 can make a running thread look finished); a second one aborts.
    """
    from sparsecap_cli.tui.app import MonitorApp

    handle = JobHandle(job).start()
    if signals is not None:
        signals.on_first = handle.stop
    app = MonitorApp(Path(run_dir), "run", interval=interval, job=handle)
    try:
        choice = app.run(**run_options)
    except BaseException:
        handle.stop()
        handle.wait(echo)
        raise
    if choice == "detach" and not handle.done:
        echo(
            f"detached: the job runs on in this terminal; follow it with `sparsecap monitor {run_dir}`; "
            "Ctrl-C stops it (after a checkpoint)."
        )
        if on_detach is not None:
            on_detach()
    elif choice is None and not handle.done:  # the app ended without asking (e.g. closed by the terminal)
        handle.stop()
    return handle.wait(echo)
