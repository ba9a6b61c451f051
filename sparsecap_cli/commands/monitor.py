"""``sparsecap monitor``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from sparsecap_engine.errors import UsageError
from sparsecap_engine.monitor_state import list_runs, load_state, resolve_monitor_path


def _finite(obj: Any) -> Any:
    """NaN/inf (a diverged loss) → null, so the output is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def monitor(
    path: Path = typer.Argument(Path("runs"), help="A run directory, or a folder of runs (default: ./runs)."),
    once: bool = typer.Option(False, "--once", help="Print a plain-text snapshot (sparklines, tables) and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the summarised state as JSON and exit."),
    points: int = typer.Option(200, "--points", help="With --json: at most this many points per curve."),
    interval: float = typer.Option(0.5, "--interval", help="Seconds between reads of events.jsonl."),
) -> None:
    """Follow a run live (curves, per-layer sparsity, sample captions) in a terminal UI, or list a folder of runs.

    Reads only run directories (events.jsonl, config.toml), so it works on a finished run, a live one, or one
    being written on another machine to a shared disk. Keys: tab panes, c curves, / filter layers, ? help, q quit.
    """
    if once and as_json:
        raise UsageError("--once and --json are alternatives: pick one")
    if interval <= 0:
        raise UsageError("--interval must be positive")
    kind, path = resolve_monitor_path(path)
    if as_json:
        if kind == "run":
            data = load_state(path).to_dict(points=max(2, points))
        else:
            data = {"root": str(path), "runs": [r.to_dict() for r in list_runs(path)]}
        typer.echo(json.dumps(_finite(data), indent=2, default=str, allow_nan=False))
        return
    if once:
        from sparsecap_cli.tui.text import render_runs, render_snapshot

        text = render_snapshot(load_state(path)) if kind == "run" else render_runs(path, list_runs(path))
        typer.echo(text, nl=False)
        return
    from sparsecap_cli.tui.app import MonitorApp

    MonitorApp(path, kind, interval=interval).run()
