"""Ctrl-C and SIGTERM for long commands: the first asks the job to stop at its next step (it validates, saves a
checkpoint and writes ``run_end`` with status ``interrupted``); a second exits at once, like ``kill -9`` (every file
is written atomically, so the last checkpoint stays loadable). Exit codes follow the shell: 130 after SIGINT, 143
after SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class StopSignals:
    """Context manager; the instance is a ``stop()`` callable for the engine's loops (a reason string once a signal
    came, else None). Outside the main thread it installs nothing and never fires."""

    def __init__(self, echo: Callable[[str], Any] = print) -> None:
        self.echo = echo
        self.received: int | None = None
        self._saved: dict[int, Any] = {}
        self.on_first: Callable[[], None] | None = None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in NAMES:
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # the second signal: out now, without unwinding (which a signal can interrupt)
            os.write(sys.stderr.fileno(), f"aborted ({NAMES.get(signum, signum)} again); the last checkpoint "
                     "stays\n".encode())
            os._exit(128 + int(signum))
        self.received = signum
        self.echo(f"{NAMES.get(signum, signum)}: stopping after this step (validate, save a checkpoint); "
                  "Ctrl-C again to abort now")
        if self.on_first is not None:
            self.on_first()

    def __call__(self) -> str | None:
        if self.received is None:
            return None
        return f"interrupted ({NAMES.get(self.received, self.received)})"

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (130 SIGINT, 143 SIGTERM); 0 when none came."""
        return 128 + int(self.received) if self.received is not None else 0
