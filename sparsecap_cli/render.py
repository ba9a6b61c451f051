"""Rendering helpers shared by the commands: a rich progress bar behind the engine's progress callback, tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sparsecap_engine.humanize import number

console = Console()
err_console = Console(stderr=True)


def _fmt(value: Any) -> str:
    """Fixed notation for floats (``0.000012``, never ``1.2e-05``): the one number convention of human output."""
    if isinstance(value, float):
        return number(value)
    return str(value)


def _score(value: Any) -> str:
    """A metric in fixed notation with 4 decimals (``0.0000``, never ``1.016e-13``)."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator[Any]:
    """Yield a ``progress(task, done, total, **info)`` callback that drives one rich bar per task name (with ETA)."""
    if quiet:
        yield lambda task, done, total, **info: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(task: str, done: int, total: int | None, **info: Any) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total, info="")
            text = "  ".join(f"{k}={_fmt(v)}" for k, v in info.items())
            bar.update(tasks[task], completed=done, total=total, info=text)

        yield update


def scores_table(title: str, rows: dict[str, Any]) -> Table:
    """A two-column table of metric name → value (4 decimals)."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, _score(value) if value is not None else "[dim]unavailable[/dim]")
    return table
