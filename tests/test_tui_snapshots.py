"""SVG snapshots of the monitor's main screens (pytest-textual-snapshot). Update with ``--snapshot-update``.

Deterministic by construction: fixed terminal sizes, fixture events with fixed times, a fixed clock for the views
that show one ("last event … ago"), run and root folder names fixed (tmp paths never appear on screen).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from sparsecap_cli.tui.app import MonitorApp
from sparsecap_cli.tui.attach import JobHandle
from tests.monitor_fixtures import T0, write_run
from tests.sweep_fixtures import write_sweep

PRUNE = {"method": "gradual", "sparsity": 0.9}


def CLOCK() -> float:  # noqa: N802 - a constant clock
    return T0 + 4000.0

Snap = Callable[..., bool]


def test_run_screen(snap_compare: Snap, tmp_path: Path) -> None:
    run = write_run(tmp_path, "ud-gradual", prune=PRUNE, steps=400, done=250)
    assert snap_compare(MonitorApp(run, "run", clock=CLOCK), terminal_size=(120, 40))


def test_run_screen_val_curve_and_layer_filter(snap_compare: Snap, tmp_path: Path) -> None:
    run = write_run(tmp_path, "ud-gradual", prune=PRUNE, steps=400, done=400)

    async def filter_layers(pilot: Pilot) -> None:
        await pilot.pause()
        pilot.app.screen.query_one("#layer-filter", Input).cursor_blink = False
        await pilot.press("3", "slash", *"lstm", "enter")

    assert snap_compare(MonitorApp(run, "run", clock=CLOCK), terminal_size=(120, 40), run_before=filter_layers)


def test_runs_list(snap_compare: Snap, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "ud-dense", steps=400, done=400)
    write_run(root, "ud-gradual-90", prune=PRUNE, steps=400, done=250)
    write_run(root, "ud-supermask-95", prune={"method": "supermask", "sparsity": 0.95}, steps=400, done=400)
    assert snap_compare(MonitorApp(root, "root", clock=CLOCK), terminal_size=(100, 16))


def test_help_screen(snap_compare: Snap, tmp_path: Path) -> None:
    run = write_run(tmp_path, "ud-dense", steps=400, done=400)
    assert snap_compare(MonitorApp(run, "run", clock=CLOCK), press=["question_mark"], terminal_size=(100, 34))


def test_stop_or_detach_dialog(snap_compare: Snap, tmp_path: Path) -> None:
    run = write_run(tmp_path, "ud-attached", steps=400, done=200)
    ready = threading.Event()

    def job(stop: Any) -> None:
        ready.set()
        while not stop():
            threading.Event().wait(0.01)

    handle = JobHandle(job).start()
    ready.wait(5)
    try:
        assert snap_compare(MonitorApp(run, "run", job=handle, clock=CLOCK), press=["q"], terminal_size=(100, 30))
    finally:
        handle.stop()
        handle.wait()


def test_sweep_screen(snap_compare: Snap, tmp_path: Path) -> None:
    """A sweep halfway: cells with status colours, three results rows, the CIDEr-vs-sparsity plot (clock fixed)."""
    sweep = write_sweep(tmp_path)
    assert snap_compare(MonitorApp(sweep, "sweep", clock=lambda: T0 + 1300), terminal_size=(120, 40))


def test_run_screen_80x24(snap_compare: Snap, tmp_path: Path) -> None:
    """The smallest usual terminal: layer names middle-elided (both ends kept), the footer whole."""
    run = write_run(tmp_path, "ud-gradual", prune=PRUNE, steps=400, done=250)
    assert snap_compare(MonitorApp(run, "run", clock=CLOCK), terminal_size=(80, 24))


def test_run_screen_200x50(snap_compare: Snap, tmp_path: Path) -> None:
    """A large terminal: wide curves, full layer names, the samples side by side."""
    run = write_run(tmp_path, "ud-gradual", prune=PRUNE, steps=400, done=250)
    assert snap_compare(MonitorApp(run, "run", clock=CLOCK), terminal_size=(200, 50))


def test_compare_runs(snap_compare: Snap, tmp_path: Path) -> None:
    """Two runs' loss curves overlaid, smoothed (0.6), with the legend."""
    root = tmp_path / "runs"
    write_run(root, "ud-dense", steps=400, done=400)
    write_run(root, "ud-gradual-90", prune=PRUNE, steps=400, done=250)
    assert snap_compare(MonitorApp(root, "root", clock=CLOCK), press=["space", "down", "space", "c", "e"],
                        terminal_size=(120, 30))
