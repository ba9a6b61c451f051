"""The monitor's sweep screens driven by their pilot on hand-written sweep folders: cells, results, plot, refresh,
opening a cell's run, the folder of sweeps."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.widgets import DataTable, Static

from sparsecap_cli.tui.app import MonitorApp
from sparsecap_cli.tui.plot import braille_lines
from sparsecap_cli.tui.screens import RunScreen
from sparsecap_cli.tui.sweep import SweepChart, SweepScreen, SweepsScreen
from tests.monitor_fixtures import T0
from tests.sweep_fixtures import (
    DENSE_ROW,
    GRADUAL_95_ROW,
    SMP_95_ROW,
    SMP_975_ROW,
    append,
    sweep_event,
    write_results,
    write_sweep,
)
from tests.test_tui import plain, run_async

SIZE = (120, 40)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cells_of(app: MonitorApp, table_id: str, key: str) -> list[str]:
    return [str(c) for c in app.screen.query_one(f"#{table_id}", DataTable).get_row(key)]


def chart_text(app: MonitorApp) -> Text:
    chart = app.screen.query_one(SweepChart)
    rendered = chart.render()
    assert isinstance(rendered, Text)
    return rendered


@run_async
async def test_sweep_screen_shows_cells_results_and_plot(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    app = MonitorApp(sweep, "sweep", clock=Clock(T0 + 1300))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, SweepScreen) and app.screen.sub_title == "paper"
        status = plain(app.screen.query_one("#sweep-status", Static))
        assert "running" in status and "4/7 cells done · 1 running · 2 pending · 1 failed · 1 target-missed" in status
        cells = app.screen.query_one("#cells", DataTable)
        assert [k.value for k in cells.rows] == [
            "dense",
            "supermask-0.95",
            "supermask-0.975",
            "gradual-0.95",
            "gradual-0.975",
            "snip-0.95",
            "snip-0.975",
        ]
        assert cells_of(app, "cells", "dense") == ["dense", "completed", "600", "5m00s", ""]
        assert cells_of(app, "cells", "gradual-0.975") == ["gradual-0.975", "running", "150/800", "1m40s", ""]
        assert cells_of(app, "cells", "gradual-0.95")[1:] == ["failed", "800", "12s", "RuntimeError: out of memory"]
        assert cells_of(app, "cells", "snip-0.975") == ["snip-0.975", "pending", "800", "—", ""]
        # status colours: running green, failed and target-missed red, pending dim
        style = {k: str(cells.get_cell(k, "status").style) for k in ("gradual-0.975", "gradual-0.95", "snip-0.95")}
        assert style == {"gradual-0.975": "bold green", "gradual-0.95": "bold red", "snip-0.95": "dim"}
        assert str(cells.get_cell("supermask-0.975", "status").style) == "bold red"
        # the highlighted cell's detail line
        assert "dense  dense · dense 600" in plain(app.screen.query_one("#cell-detail", Static))
        results = app.screen.query_one("#results", DataTable)
        assert [k.value for k in results.rows] == ["dense", "supermask-0.95", "supermask-0.975"]
        assert cells_of(app, "results", "supermask-0.95") == [
            "supermask",
            "95%",
            "95.01%",
            "0.668",
            "0.297",
            "246 kB",
            "0.41×",
            "7m00s",
            "completed",
        ]
        # the plot: a legend per method, a braille line per method, the dense line in its own colour
        legend = plain(app.screen.query_one("#plot-legend", Static))
        assert "━ dense 0.679" in legend and "━ supermask" in legend and "━ gradual (no results)" in legend
        text = chart_text(app)
        assert any("\u2801" <= ch <= "\u28ff" for ch in text.plain)
        assert "93.12%" in text.plain and "97.5%" in text.plain and "0.679" in text.plain
        colours = {str(span.style) for span in text.spans}
        assert {"bold white", "bold green"} <= colours  # dense and supermask


@run_async
async def test_new_results_row_shows_up_after_the_refresh(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    clock = Clock(T0 + 1300)
    app = MonitorApp(sweep, "sweep", interval=60, clock=clock)  # the test polls by hand
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SweepScreen)
        results = screen.query_one("#results", DataTable)
        assert results.row_count == 3
        assert not screen.poll()  # nothing new on disk
        # the running cell's time ticks with the clock, without any file changing
        clock.now += 20
        screen.poll()
        assert cells_of(app, "cells", "gradual-0.975")[3] == "2m00s"
        append(
            sweep,
            sweep_event("cell_end", T0 + 1500, cell="gradual-0.975", status="completed", message="", wall_s=300.0),
            sweep_event("cell_start", T0 + 1500, cell="snip-0.95", action="run"),
        )
        write_results(sweep, [DENSE_ROW, SMP_95_ROW, SMP_975_ROW, GRADUAL_95_ROW], DENSE_ROW, T0 + 1500)
        assert screen.poll()
        await pilot.pause()
        assert [k.value for k in results.rows][-1] == "gradual-0.95" and results.row_count == 4
        assert cells_of(app, "results", "gradual-0.95")[:4] == ["gradual", "95%", "95.00%", "0.601"]
        assert cells_of(app, "cells", "gradual-0.975")[1:4] == ["completed", "800", "5m00s"]
        assert cells_of(app, "cells", "snip-0.95")[1] == "running"
        assert "5/7 cells done" in plain(screen.query_one("#sweep-status", Static))
        assert "━ gradual (no results)" not in plain(screen.query_one("#plot-legend", Static))
        assert "bold cyan" in {str(span.style) for span in chart_text(app).spans}  # gradual's line


@run_async
async def test_live_refresh_on_the_timer(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, runs=False)
    app = MonitorApp(sweep, "sweep", interval=0.1, clock=Clock(T0 + 1300))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        results = app.screen.query_one("#results", DataTable)
        assert results.row_count == 3
        write_results(sweep, [DENSE_ROW, SMP_95_ROW, SMP_975_ROW, GRADUAL_95_ROW], DENSE_ROW, T0 + 1500)
        deadline = time.monotonic() + 2.0
        while results.row_count < 4 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert results.row_count == 4


@run_async
async def test_odd_results_do_not_break_the_screen(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, runs=False)
    nameless = {**GRADUAL_95_ROW, "cell": None, "CIDEr": float("nan")}
    write_results(sweep, [DENSE_ROW, SMP_95_ROW, SMP_95_ROW, nameless, nameless], DENSE_ROW, T0)
    app = MonitorApp(sweep, "sweep", interval=60, clock=Clock(T0 + 1300))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        results = app.screen.query_one("#results", DataTable)
        assert results.row_count == 5
        assert [str(c) for c in results.get_row_at(4)][:4] == ["gradual", "95%", "95.00%", "—"]


@run_async
async def test_enter_opens_a_cells_run_and_escape_comes_back(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    app = MonitorApp(sweep, "sweep", interval=60, clock=Clock(T0 + 1300))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        sweep_screen = app.screen
        await pilot.press("down", "down")  # supermask-0.975
        assert "reached 93.1% of target 97.5%" in plain(sweep_screen.query_one("#cell-detail", Static))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.run_dir == sweep / "supermask-0.975"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is sweep_screen
        # a pending cell has no run yet: a notice, no screen change
        await pilot.press("down", "down", "down", "enter")
        await pilot.pause()
        assert app.screen is sweep_screen
        assert any("snip-0.95: no run directory yet" in n.message for n in app._notifications)
        # the results table opens runs too
        await pilot.press("tab")
        assert app.focused is sweep_screen.query_one("#results", DataTable)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.run_dir == sweep / "dense"
        await pilot.press("escape", "q")
        await pilot.pause()
    assert not app.is_running


@run_async
async def test_folder_of_sweeps_opens_a_sweep(tmp_path: Path) -> None:
    write_sweep(tmp_path, "a-paper", runs=False)
    write_sweep(tmp_path, "b-small", runs=False)
    app = MonitorApp(tmp_path, "sweeps", clock=Clock(T0 + 1300))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, SweepsScreen)
        table = app.screen.query_one("#sweeps", DataTable)
        assert table.row_count == 2
        assert [str(c) for c in table.get_row_at(0)] == [
            "a-paper",
            "running",
            "4/7",
            "1",
            "1",
            "1",
            "supermask-0.95 CIDEr 0.668",
        ]
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, SweepScreen) and app.screen.sweep_dir.name == "b-small"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, SweepsScreen)


def test_braille_lines_colours_each_series() -> None:
    dense = ([0.9, 1.0], [0.7, 0.7])
    method = ([0.9, 0.95, 1.0], [0.5, 0.6, 0.65])
    chart = braille_lines([dense, method], 40, 10, x_fmt=lambda v: f"{100 * v:.4g}%", markers=[False, True])
    assert chart is not None
    assert chart.y_labels[0] == "0.7 ┤" and chart.y_labels[-1] == "0.5 ┤"
    assert chart.x_labels.split() == ["90%", "95%", "100%"]
    top = chart.owner[0]
    assert top.count(0) >= len(top) - 2  # the dense line runs along the top row
    assert any(1 in row for row in chart.owner[1:]) and chart.owner[-1][0] == 1  # the method starts bottom left
    # a single point, alone on its x: the axis widens instead of dividing by zero
    one = braille_lines([([0.95], [0.6])], 30, 6, markers=[True])
    assert one is not None and any(ch != "\u2800" for row in one.plot for ch in row)
    assert braille_lines([([], [])], 30, 6) is None and braille_lines([dense], 8, 6) is None
