"""The Textual monitor driven by its pilot on fixture run directories: values, live updates, keys, attached jobs."""

from __future__ import annotations

import asyncio
import functools
import io
import math
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import DataTable, Input, Static

from sparsecap_cli.tui.app import MonitorApp
from sparsecap_cli.tui.attach import JobHandle, run_with_monitor
from sparsecap_cli.tui.screens import HelpScreen, RunScreen, RunsScreen, StopScreen
from sparsecap_cli.tui.widgets import CurvesPane, LogFollower, MetricsLine, SamplesPane, StatusLine
from tests.monitor_fixtures import T0, event, write_run

SIZE = (120, 40)
PRUNE = {"method": "gradual", "sparsity": 0.9}


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no pytest async plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def plain(widget: Static) -> str:
    """A Static's current content as plain text."""
    console = Console(width=400, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def status(app: MonitorApp) -> str:
    return plain(app.screen.query_one(StatusLine))


@run_async
async def test_values_appear_in_the_panes(tmp_path: Path) -> None:
    run = write_run(tmp_path, "gradual", prune=PRUNE, steps=400, done=250)
    app = MonitorApp(run, "run")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        text = status(app)
        for part in (
            "running",
            "step 250/400 (62%)",
            "epoch 5",
            "items/s 160",
            "ETA 1m15s",
            "device cpu",
            "last.safetensors@200 ★best",
        ):
            assert part in text, (part, text)
        metrics = plain(app.screen.query_one(MetricsLine))
        assert "CIDEr-D 0.5000" in metrics and "BLEU-4 0.1667" in metrics and "gradual" in metrics
        assert "loss  last 1.71 @ 250" in plain(app.screen.query_one("#curve-legend", Static))
        assert "target 90.0%" in plain(app.screen.query_one("#overall", Static))
        table = app.screen.query_one("#layers", DataTable)
        assert table.row_count == 9
        assert str(table.get_row("logit.weight")[0]) == "66.0%"
        samples = plain(app.screen.query_one("#samples-body", Static))
        assert "img_0001.png" in samples and "a red circle on the left" in samples and "a small red circle" in samples


@run_async
async def test_appended_events_update_the_widgets(tmp_path: Path) -> None:
    run = write_run(tmp_path, "gradual", prune=PRUNE, steps=400, done=250)
    app = MonitorApp(run, "run", interval=60)  # the test polls by hand
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        follower = app.screen.query_one(LogFollower)
        with (run / "events.jsonl").open("a") as f:
            f.write(event("train", 300, T0 + 150, epoch=6.0, loss=1.2, lr=1e-3, items_per_s=170.0))
            f.write(event("val", 300, T0 + 150, metrics={"CIDEr-D": 0.77, "BLEU-4": 0.3}))
            f.write(event("sparsity", 300, T0 + 150, overall=0.8, target=0.9, layers={"logit.weight": 0.85}))
            f.write(
                event(
                    "samples",
                    300,
                    T0 + 150,
                    items=[
                        {"image": "missing.png", "image_id": 9, "caption": "a green triangle", "refs": ["a triangle"]}
                    ],
                )
            )
            f.write(event("checkpoint", 300, T0 + 151, path=str(run / "checkpoints" / "last.safetensors"), best=True))
            f.write('{"kind": "train", "step": 31')  # torn: the writer is mid-line
        assert follower.poll()
        await pilot.pause()
        assert "step 300/400" in status(app) and "items/s 170" in status(app) and "@300 ★best" in status(app)
        assert "CIDEr-D 0.7700" in plain(app.screen.query_one(MetricsLine))
        table = app.screen.query_one("#layers", DataTable)
        assert table.row_count == 1 and str(table.get_row("logit.weight")[0]) == "85.0%"
        samples = plain(app.screen.query_one("#samples-body", Static))
        assert "a green triangle" in samples and "no image" in samples
        with (run / "events.jsonl").open("a") as f:
            f.write('0, "time": 1, "loss": 1.1}\n{broken\n')
            f.write(
                event(
                    "run_end",
                    310,
                    T0 + 160,
                    status="stopped",
                    message="stopped by the user",
                    best_step=300,
                    best_cider=0.77,
                )
            )
        assert follower.poll()
        await pilot.pause()
        text = status(app)
        assert "stopped" in text and "step 310/400" in text and "skipped lines 1" in text
        assert not follower.poll()  # nothing new


@run_async
async def test_live_tail_within_a_second(tmp_path: Path) -> None:
    run = write_run(tmp_path, "live", lines=[])  # config.toml only: the log does not exist yet
    (run / "events.jsonl").unlink()
    app = MonitorApp(run, "run", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "waiting" in status(app)
        (run / "events.jsonl").write_text(event("train", 7, T0, epoch=0.1, loss=3.0, lr=1e-3, items_per_s=50.0))
        deadline = time.monotonic() + 1.0
        while "step 7" not in status(app) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert "step 7" in status(app) and "running" in status(app)


@run_async
async def test_keys_help_filter_tab_curves_quit(tmp_path: Path) -> None:
    run = write_run(tmp_path, "gradual", prune=PRUNE, steps=400, done=400)
    app = MonitorApp(run, "run")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        curves = screen.query_one(CurvesPane)
        assert app.focused is curves
        # ? opens the help screen, escape closes it
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is screen
        # curves: c cycles, digits pick, arrows move within the focused pane
        await pilot.press("c")
        assert curves.selected == "lr"
        await pilot.press("3")
        assert curves.selected == "CIDEr-D"
        assert "CIDEr-D  last 0.8 @ 400" in plain(screen.query_one("#curve-legend", Static))
        await pilot.press("right")
        assert curves.selected == "BLEU-4"
        await pilot.press("5")
        assert curves.selected == "sparsity"
        # / filters layers; escape clears the filter
        table = screen.query_one("#layers", DataTable)
        await pilot.press("slash")
        box = screen.query_one("#layer-filter", Input)
        assert box.display and app.focused is box
        await pilot.press(*"lstm")
        assert table.row_count == 4
        await pilot.press("enter")
        assert app.focused is table and table.row_count == 4
        await pilot.press("escape")
        assert table.row_count == 9 and not box.display
        # tab walks the panes: curves → layer table → samples → curves
        curves.focus()
        await pilot.pause()
        await pilot.press("tab")
        assert app.focused is table
        await pilot.press("tab")
        assert app.focused is screen.query_one(SamplesPane)
        await pilot.press("tab")
        assert app.focused is curves
        # q quits
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value is None and not app.is_running


@run_async
async def test_runs_list_opens_a_run_and_comes_back(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "a-dense", steps=200, done=200)
    write_run(root, "b-prune", prune={"method": "supermask", "sparsity": 0.95}, steps=400, done=200)
    app = MonitorApp(root, "root")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        table = app.screen.query_one("#runs", DataTable)
        assert table.row_count == 2
        row = [str(c) for c in table.get_row_at(1)]
        assert row[:6] == ["b-prune", "running", "updown", "supermask", "95.0%", "63.3%"]
        # a new run appears on the next poll
        write_run(root, "c-new", steps=100, done=50)
        app.screen.poll()
        assert table.row_count == 3
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.run_dir.name == "b-prune"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


def _fake_job(run: Path, started: threading.Event) -> Any:
    """A job that logs a train event per tick until stopped, then 'saves a checkpoint' and ends the run."""

    def job(stop: Any) -> str:
        step = 0
        with (run / "events.jsonl").open("a") as f:
            while not stop():
                step += 1
                f.write(event("train", step, T0 + step, loss=1.0, lr=1e-3, items_per_s=10.0))
                f.flush()
                started.set()
                time.sleep(0.01)
            f.write(event("checkpoint", step, T0 + step, path=str(run / "checkpoints/last.safetensors"), best=False))
            f.write(event("run_end", step, T0 + step, status="stopped", message="stopped by the user"))
        return f"stopped at {step}"

    return job


@run_async
async def test_attached_job_quit_asks_stop_or_detach(tmp_path: Path) -> None:
    run = write_run(tmp_path, "attached", lines=[])
    started = threading.Event()
    handle = JobHandle(_fake_job(run, started)).start()
    started.wait(5)
    app = MonitorApp(run, "run", interval=0.1, job=handle)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("q")
        assert isinstance(app.screen, StopScreen)
        await pilot.press("escape")  # cancel: still monitoring
        assert isinstance(app.screen, RunScreen) and not handle.stopping
        await pilot.press("q")
        await pilot.press("s")
        deadline = time.monotonic() + 5
        while app.is_running and time.monotonic() < deadline:
            await pilot.pause(0.05)
    assert app.return_value == "stopped"
    assert handle.wait().startswith("stopped at ")


@run_async
async def test_attached_job_detach(tmp_path: Path) -> None:
    run = write_run(tmp_path, "attached", lines=[])
    started = threading.Event()
    handle = JobHandle(_fake_job(run, started)).start()
    started.wait(5)
    app = MonitorApp(run, "run", job=handle)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q", "d")
        await pilot.pause()
    assert app.return_value == "detach" and not handle.done
    handle.stop()
    assert handle.wait().startswith("stopped at ")


def _pilot_quits(started: threading.Event, choice: str, then: Any = None) -> Any:
    """An auto-pilot that waits for the job to start, quits the monitor with ``choice`` (stop / detach), then
    calls ``then``."""

    async def pilot_fn(pilot: Any) -> None:
        started.wait(5)
        await pilot.pause()
        await pilot.press("q", choice)
        if then is not None:
            then()

    return pilot_fn


def test_run_with_monitor_returns_the_job_result(tmp_path: Path) -> None:
    run = write_run(tmp_path, "attached", lines=[])
    started = threading.Event()
    said: list[str] = []
    pilot_fn = _pilot_quits(started, "s")

    result = run_with_monitor(
        _fake_job(run, started), run, interval=0.1, echo=said.append, headless=True, size=SIZE, auto_pilot=pilot_fn
    )
    assert result.startswith("stopped at ") and said == []
    assert "run_end" in (run / "events.jsonl").read_text()


def test_run_with_monitor_reraises_job_errors(tmp_path: Path) -> None:
    run = write_run(tmp_path, "broken", lines=[])

    def job(stop: Any) -> None:
        raise ValueError("boom")

    async def pilot_fn(pilot: Any) -> None:
        await pilot.pause(0.3)
        await pilot.press("q")

    try:
        run_with_monitor(job, run, interval=0.1, headless=True, size=SIZE, auto_pilot=pilot_fn)
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the job's error was swallowed")


def test_heat_strip_groups_many_tensors() -> None:
    from sparsecap_cli.tui.widgets import heat_strip

    assert heat_strip([0.5] * 10, 40).plain == "█" * 10
    many = heat_strip([0.9] * 500, 120).plain
    assert many.startswith("█" * 100) and many.endswith("(5 tensors per cell)")


def test_detached_job_stops_on_a_real_ctrl_c(tmp_path: Path) -> None:
    """``train --tui`` → detach → Ctrl-C: the signal stops the job after its checkpoint (it used to abort the
    process: a KeyboardInterrupt inside ``Thread.join`` made the running thread look finished)."""
    import os
    import signal

    from sparsecap_cli.signals import StopSignals

    run = write_run(tmp_path, "attached", lines=[])
    started = threading.Event()
    said: list[str] = []

    def ctrl_c_later() -> None:
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    # once detached, the job runs on; then the Ctrl-C
    pilot_fn = _pilot_quits(started, "d", lambda: threading.Thread(target=ctrl_c_later, daemon=True).start())

    saved = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # what a fresh process has (another test may differ)
    try:
        detached: list[bool] = []
        with StopSignals(said.append) as signals:
            result = run_with_monitor(_fake_job(run, started), run, interval=0.1, echo=said.append,
                                      signals=signals, headless=True, size=SIZE, auto_pilot=pilot_fn,
                                      on_detach=lambda: detached.append(True))
        assert detached == [True]  # the caller was told, to start its progress lines
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, saved)
    assert result.startswith("stopped at ")
    assert signals() == "interrupted (Ctrl-C)" and signals.exit_code == 130
    assert any(line.startswith("detached") for line in said) and any("Ctrl-C: stopping" in s for s in said)


def three_runs(tmp_path: Path, prune_done: int) -> Path:
    """A runs folder: a-dense and c-gradual finished, b-prune (supermask 95 %) running at ``prune_done`` of 400."""
    root = tmp_path / "runs"
    write_run(root, "a-dense", steps=200, done=200)
    write_run(root, "b-prune", prune={"method": "supermask", "sparsity": 0.95}, steps=400, done=prune_done)
    write_run(root, "c-gradual", prune=PRUNE, steps=200, done=200)
    return root


@run_async
async def test_runs_list_sorts_filters_deletes_and_has_its_own_help(tmp_path: Path) -> None:
    root = three_runs(tmp_path, prune_done=200)
    app = MonitorApp(root, "root")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one("#runs", DataTable)

        def names() -> list[str]:
            return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]

        assert names() == ["a-dense", "b-prune", "c-gradual"]  # same start: ties by name
        await pilot.press("s")  # started → name
        assert screen.sort_key == "name" and names() == ["a-dense", "b-prune", "c-gradual"]
        await pilot.press("S")
        assert names() == ["c-gradual", "b-prune", "a-dense"]
        assert "sorted by name ↑" in plain(screen.query_one("#runs-info", Static))
        # a header click sorts by that column, a second click reverses
        await pilot.click("#runs", offset=(2, 0))
        assert screen.sort_key == "name" and not screen.sort_reverse and names()[0] == "a-dense"
        # / filters on the list; escape clears
        await pilot.press("slash")
        assert screen.query_one("#runs-filter", Input).display
        await pilot.press(*"supermask")
        assert names() == ["b-prune"]
        assert "1 of 3 runs match “supermask”" in plain(screen.query_one("#runs-info", Static))
        await pilot.press("escape")
        assert names() == ["a-dense", "b-prune", "c-gradual"] and not screen.query_one("#runs-filter").display
        # the run found by the filter stays selected; d on it (running) is refused: nothing asked, nothing deleted
        assert screen.selected_path() == str(root / "b-prune")
        await pilot.press("d")
        await pilot.pause()
        assert app.screen is screen and (root / "b-prune").is_dir()
        # d on a finished run asks; n keeps it, y deletes it
        await pilot.press("down", "d")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmScreen"
        assert "c-gradual" in plain(app.screen.query_one("#confirm-text", Static))
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is screen and (root / "c-gradual").is_dir()
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert app.screen is screen and not (root / "c-gradual").exists()
        assert names() == ["a-dense", "b-prune"]
        # ? shows the runs list's own help; on a run it is the run screen's
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen) and "runs list" in plain(app.screen.query_one("#help-text", Static))
        await pilot.press("escape", "enter")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        await pilot.press("question_mark")
        await pilot.pause()
        text = plain(app.screen.query_one("#help-text", Static))
        assert "curves" in text and "delete the selected run" not in text


@run_async
async def test_compare_marked_runs_overlays_their_curves_with_smoothing_log_and_zoom(tmp_path: Path) -> None:
    from sparsecap_cli.tui.compare import CompareChart, CompareScreen

    root = three_runs(tmp_path, prune_done=300)
    app = MonitorApp(root, "root")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        await pilot.press("space", "down", "space")
        assert runs.marked == [str(root / "a-dense"), str(root / "b-prune")]
        assert str(runs.query_one("#runs", DataTable).get_row_at(0)[0]) == "● a-dense"
        assert "2 marked" in plain(runs.query_one("#runs-info", Static))
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen) and [r.name for r in screen.runs] == ["a-dense", "b-prune"]
        legend = plain(screen.query_one("#compare-legend", Static))
        assert "━ a-dense" in legend and "━ b-prune" in legend
        chart = screen.query_one("#compare-main", CompareChart)
        assert chart.curve == "loss" and [len(s) for s, _ in chart.lines] == [20, 30]  # every 10 steps: 200, 300
        raw = [v for _, v in chart.lines]
        assert raw[1] == screen.states[1].curve("loss").values
        assert not screen.query_one("#compare-next").display  # 120 columns: one chart
        await pilot.press("e")
        assert screen.smoothing == 0.6 and "smoothing 0.6" in plain(screen.query_one("#compare-legend", Static))
        smoothed = [v for _, v in chart.lines]
        assert smoothed[1][0] == raw[1][0] and smoothed[1][5] != raw[1][5]
        await pilot.press("e", "e", "e")
        assert screen.smoothing == 0.0
        await pilot.press("z")
        assert screen.zoom == 0.5 and min(s for steps, _ in chart.lines for s in steps) >= 150  # last half of 0..300
        await pilot.press("z", "z", "z", "l")
        assert screen.zoom == 1.0 and screen.log_scale and "log10" in plain(screen.query_one("#compare-legend", Static))
        assert chart.lines[0][1][0] == pytest.approx(math.log10(raw[0][0]))
        await pilot.press("l", "right")
        assert screen.curve == "lr" and chart.curve == "lr"
        names = screen._names
        assert "CIDEr-D" in names and "sparsity" in names  # the union of the runs' curves
        await pilot.click(f"#curve-{names.index('CIDEr-D')}")  # tabs take the mouse
        await pilot.pause()
        assert screen.curve == "CIDEr-D" and chart.curve == "CIDEr-D"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is runs
        # with fewer than two marked, c compares every run shown
        await pilot.press("space", "up", "space")  # the cursor is still on b-prune
        assert runs.marked == []
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen) and len(app.screen.runs) == 3


@run_async
async def test_compare_on_a_wide_terminal_shows_the_next_curve_too(tmp_path: Path) -> None:
    from sparsecap_cli.tui.compare import CompareChart, CompareScreen

    root = tmp_path / "runs"
    runs = [write_run(root, name, steps=200, done=200) for name in ("x", "y")]
    app = MonitorApp(root, "root")
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        app.push_screen(CompareScreen(runs))
        await pilot.pause()
        nxt = app.screen.query_one("#compare-next", CompareChart)
        assert nxt.display and nxt.curve == "lr" and app.screen.query_one("#compare-main", CompareChart).curve == "loss"


@run_async
async def test_run_screen_curve_tabs_take_a_click(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", prune=PRUNE, steps=200, done=200)
    app = MonitorApp(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = app.screen.query_one(CurvesPane)
        strip = app.screen.query_one("#curve-tabs")
        start, _, name = strip.spans[2]
        assert pane.selected == "loss" and name != "loss"
        await pilot.click("#curve-tabs", offset=(start + 1, 0))
        await pilot.pause()
        assert pane.selected == name


@run_async
async def test_layouts_keep_layer_names_footer_and_samples_at_every_size(tmp_path: Path) -> None:
    from sparsecap_cli.tui.widgets import SparsityPane

    run = write_run(tmp_path, "ud-gradual", prune=PRUNE, steps=400, done=250)
    for size in ((80, 24), (60, 18), (240, 40)):
        app = MonitorApp(run)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            screen = app.screen
            layers = screen.query_one(SparsityPane).query_one("#layers", DataTable)
            shown = [str(layers.get_row_at(i)[-1]) for i in range(layers.row_count)]
            full = list(screen.query_one(LogFollower).state.sparsity.layers)
            for name, cell in zip(full, shown, strict=True):  # both ends of every name survive (ih vs hh)
                assert cell == name or (cell[0] == name[0] and cell[-4:] == name[-4:]), (cell, name)
            assert len(set(shown)) == len(shown)  # no two layers look the same
            footer = {key for key, b in screen.active_bindings.items() if b.binding.show}
            assert {"tab", "c", "slash", "escape", "q", "question_mark"} <= footer
            keys = list(screen.query("FooterKey"))  # and every key is drawn inside the terminal, none cut off
            assert len(keys) >= 6 and all(k.region.right <= size[0] and k.region.width > 0 for k in keys)
            samples = screen.query_one(SamplesPane)
            for _ in range(4):  # tab reaches the samples pane, and the screen scrolls it into view
                if samples.has_focus:
                    break
                await pilot.press("tab")
            await pilot.pause()
            assert samples.has_focus and samples.region.y < size[1] - 1 and samples.region.height >= 4
            assert samples.columns() == (2 if size[0] >= 240 else 1)  # a wide terminal lays samples side by side
            assert screen.has_class("-narrow") == (size[0] < 70)


def test_short_layer_names_keep_both_ends_and_stay_distinct() -> None:
    from sparsecap_cli.tui.text import middle_elide, short_layer_name

    assert middle_elide("abcdefghij", 7) == "abc…hij" and middle_elide("abc", 7) == "abc"
    ud = ["decoder.embed.0.weight", "decoder.fc_embed.0.weight", "decoder.att_embed.0.weight", "decoder.ctx2att.weight",
          "decoder.core.att_lstm.weight_ih", "decoder.core.att_lstm.weight_hh", "decoder.core.lang_lstm.weight_ih",
          "decoder.core.lang_lstm.weight_hh", "decoder.core.h2att.weight", "decoder.core.alpha_net.weight",
          "decoder.logit.weight"]
    for width in (15, 18, 22):
        short = [short_layer_name(n, width) for n in ud]
        assert all(len(s) <= width for s in short) and len(set(short)) == len(ud), short
    assert short_layer_name("decoder.core.att_lstm.weight_ih", 22) == "d.c.att_lstm.weight_ih"
    assert short_layer_name("decoder.logit.weight", 40) == "decoder.logit.weight"


def test_detached_progress_is_silent_until_detach_then_prints_plain_lines(capsys, monkeypatch) -> None:
    from sparsecap_cli.commands.common import DetachedProgress

    monkeypatch.setenv("SPARSECAP_PROGRESS_EVERY", "0")
    progress = DetachedProgress()
    progress("train", 10, 100, loss=2.5)
    assert capsys.readouterr().err == ""  # the monitor shows the run: nothing on the terminal
    progress.start()
    progress("train", 20, 100, loss=2.25)
    progress("train", 30, 100, loss=2.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("train 20/100 (20%)") and lines[0].endswith("loss=2.25")
    assert lines[1].startswith("train 30/100 (30%)") and "eta" in lines[1]
