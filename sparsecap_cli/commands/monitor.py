"""``sparsecap monitor``."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import typer

from sparsecap_cli.commands.common import finite
from sparsecap_engine.errors import UsageError
from sparsecap_engine.monitor_roots import list_runs, resolve_monitor_path
from sparsecap_engine.monitor_state import load_state


def monitor(
    path: Path = typer.Argument(
        Path("runs"), help="A run directory, a folder of runs, a sweep folder or a folder of sweeps (default: ./runs)."
    ),
    once: bool = typer.Option(False, "--once", help="Print a plain-text snapshot (sparklines, tables) and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the summarised state as JSON and exit (--once implied)."),
    points: int = typer.Option(200, "--points", help="With --json: at most this many points per curve."),
    interval: float = typer.Option(0.5, "--interval", help="Seconds between reads of events.jsonl."),
) -> None:
    """Follow a run (curves, per-layer sparsity, sample captions) or a sweep live in a terminal UI, or list them.

    A sweep folder (``sparsecap sweep``) shows its cells with their status, the results table as it fills in and
    the CIDEr-vs-sparsity plot. Reads only run and sweep folders (events.jsonl, config.toml, plan.json,
    results.json), so it works on a finished run, a live one, or one being written on another machine to a shared
    disk. Keys: tab panes, c curves, / filter layers, enter open a run (or a sweep's cell), ? help, q quit.
    """
    if not 0 < interval < math.inf:  # NaN fails too
        raise UsageError(f"--interval must be a positive number of seconds, got {interval}")
    kind, path = resolve_monitor_path(path)
    if as_json:
        typer.echo(json.dumps(finite(_json_state(kind, path, points)), indent=2, default=str, allow_nan=False))
        return
    if once:
        typer.echo(_text_state(kind, path), nl=False)
        return
    from sparsecap_cli.tui.app import MonitorApp

    MonitorApp(path, kind, interval=interval).run()


def _json_state(kind: str, path: Path, points: int) -> dict[str, Any]:
    if kind == "run":
        return load_state(path).to_dict(points=max(2, points))
    if kind == "root":
        return {"root": str(path), "runs": [r.to_dict() for r in list_runs(path)]}
    from sparsecap_engine.sweep_state import list_sweeps, load_sweep

    if kind == "sweep":
        return load_sweep(path).to_dict(now=time.time())
    return {"root": str(path), "sweeps": [s.to_dict() for s in list_sweeps(path)]}


def _text_state(kind: str, path: Path) -> str:
    if kind in ("run", "root"):
        from sparsecap_cli.tui.text import render_runs, render_snapshot

        return render_snapshot(load_state(path)) if kind == "run" else render_runs(path, list_runs(path))
    from sparsecap_cli.tui.sweep_text import render_sweep, render_sweeps
    from sparsecap_engine.sweep_state import list_sweeps, load_sweep

    if kind == "sweep":
        return render_sweep(load_sweep(path), now=time.time())
    return render_sweeps(path, list_sweeps(path))
