"""Rendering helpers shared by the commands: a rich progress bar behind the engine's progress callback, tables."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from sparsecap_engine.humanize import number

console = Console()
err_console = Console(stderr=True)


def _fmt(value: Any) -> str:
    """Fixed notation for floats (``0.000012``, never ``1.2e-05``), trailing zeros dropped (``538.6``, not
    ``538.6000``): the one number convention of progress lines."""
    if isinstance(value, float):
        return number(value, trim=True)
    return str(value)


def _score(value: Any) -> str:
    """A metric in fixed notation with 4 decimals (``0.0000``, never ``1.016e-13``)."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


def plain_progress(every_s: float, write: Any, clock: Any = time.monotonic) -> Any:
    """A ``progress`` callback for logs (stderr not a terminal: nohup, CI, batch jobs): one plain line per task at
    its start, then at most every ``every_s`` seconds and at its end — ``train 120/1500 (8%) elapsed 0:01:02 eta
    0:11:20 loss=3.21``."""
    started: dict[str, tuple[float, int]] = {}
    last: dict[str, float] = {}

    def update(task: str, done: int, total: int | None, **info: Any) -> None:
        now = clock()
        if task not in started:
            started[task] = (now, done)
        t0, d0 = started[task]
        finished = total is not None and done >= total
        if task in last and now - last[task] < every_s and not finished:
            return
        last[task] = now
        line = f"{task} {done:,}" + (f"/{total:,} ({done / total:.0%})" if total else "")
        line += f" elapsed {_clock(now - t0)}"
        if total and done > d0 and not finished:
            line += f" eta {_clock((total - done) * (now - t0) / (done - d0))}"
        extra = "  ".join(f"{k}={_fmt(v)}" for k, v in info.items())
        write(line + (f"  {extra}" if extra else ""))

    return update


def log_progress() -> Any:
    """:func:`plain_progress` on stderr, every ``$SPARSECAP_PROGRESS_EVERY`` seconds (30): progress for logs."""
    every = float(os.environ.get("SPARSECAP_PROGRESS_EVERY", "30") or 30)
    return plain_progress(every, lambda line: print(line, file=sys.stderr, flush=True))


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator[Any]:
    """Yield a ``progress(task, done, total, **info)`` callback that drives one rich bar per task name (with ETA),
    or, when stderr is not a terminal, prints a plain line every ``$SPARSECAP_PROGRESS_EVERY`` seconds (30)."""
    if quiet:
        yield lambda task, done, total, **info: None
        return
    if not err_console.is_terminal:
        yield log_progress()
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


def next_steps(*commands: str) -> None:
    """End a command by naming the likely next ones: ``next: sparsecap eval runs/x  ·  sparsecap caption …``."""
    console.print(Text("next: " + "  ·  ".join(commands), style="dim"), soft_wrap=True, highlight=False)


def q(path: Any) -> str:
    """A path as it would be typed in a shell command."""
    return shlex.quote(str(path))


def scores_table(title: str, rows: dict[str, Any]) -> Table:
    """A two-column table of metric name (BLEU-4, ROUGE-L, CIDEr-D: one spelling everywhere) → value (4 decimals)."""
    from sparsecap_engine.humanize import metric_label

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(metric_label(key), _score(value) if value is not None else "[dim]unavailable[/dim]")
    return table
