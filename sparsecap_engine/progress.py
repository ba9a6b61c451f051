"""The one progress callback every long loop reports through (the CLI renders it with rich)."""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    """``progress(task, done, total, **info)``: ``task`` names the loop, ``info`` carries e.g. loss, items_per_s."""

    def __call__(self, task: str, done: int, total: int | None, **info: Any) -> None: ...


def no_progress(task: str, done: int, total: int | None, **info: Any) -> None:
    """A progress callback that shows nothing (tests, library use)."""
