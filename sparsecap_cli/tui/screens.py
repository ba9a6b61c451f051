"""The monitor's screens: one run, a root of runs, the help screen and the stop-or-detach question."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Static

from sparsecap_cli.tui.text import fmt, fmt_duration, fmt_pct
from sparsecap_cli.tui.widgets import (
    STATUS_STYLE,
    CurvesPane,
    LogFollower,
    MetricsLine,
    SamplesPane,
    SparsityPane,
    StatusLine,
)
from sparsecap_engine.monitor_roots import RunSummary, RunsWatch

HELP = """\
[b]sparsecap monitor[/b] follows a run's events.jsonl (polled twice a second) and shows:

  [b]status line[/b]   status, step, epoch, items/s, ETA, device, last checkpoint
  [b]curves[/b]        loss and learning rate per step, validation metrics per evaluation,
                overall sparsity per evaluation (pruning runs)
  [b]sparsity[/b]      overall vs target, a heat strip (one cell per pruned tensor: blue dense,
                red pruned) and the per-layer table
  [b]samples[/b]       the latest validation images, generated captions and references
  [b]sweep[/b]         (a sweep folder) cells with status, results table, CIDEr vs sparsity

[b]keys[/b]
  [b]tab[/b] / [b]shift+tab[/b]   next / previous pane
  [b]c[/b]                 next curve   ([b]1[/b]–[b]9[/b] pick one; [b]←[/b] [b]→[/b] in the curves pane)
  [b]/[/b]                 filter layers by name ([b]enter[/b] apply, [b]esc[/b] clear)
  [b]enter[/b]             open the selected run (runs list) or cell's run (sweep)
  [b]escape[/b]            back to the runs list or the sweep
  [b]?[/b]                 this help
  [b]q[/b]                 quit (with an attached job: stop it or detach)

Press [b]escape[/b] or [b]?[/b] to close."""


class HelpScreen(ModalScreen[None]):
    """Keys and what each pane shows."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(HELP, id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "help"


class StopScreen(ModalScreen[str]):
    """Closing the monitor while its job runs: stop the job (it validates and saves a checkpoint) or detach."""

    BINDINGS = [
        Binding("s", "choose('stop')", "Stop job"),
        Binding("d", "choose('detach')", "Detach"),
        Binding("escape", "choose('cancel')", "Cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="stop-box"):
            yield Static(
                "The job is still running.\n\n"
                "[b]Stop[/b]: finish the current step, validate and save a checkpoint, then quit.\n"
                "[b]Detach[/b]: close the monitor and let the job run on in this terminal.",
                id="stop-text",
            )
            with Horizontal(id="stop-buttons"):
                yield Button("Stop (s)", id="stop", variant="error")
                yield Button("Detach (d)", id="detach", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#stop-box").border_title = "quit"

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


class RunScreen(Screen[None]):
    """One run: status line, curves, sparsity, samples. Fed by its :class:`LogFollower`."""

    BINDINGS = [
        Binding("tab", "app.focus_next", "Next pane"),
        Binding("c", "cycle_curve", "Curve"),
        Binding("slash", "filter", "Filter layers", key_display="/"),
        Binding("escape", "back", "Back / clear"),
        *[Binding(str(i), f"pick_curve({i})", show=False) for i in range(1, 10)],
    ]

    def __init__(self, run_dir: Path, interval: float = 0.5, from_list: bool = False, note: str = "") -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.interval = interval
        self.from_list = from_list
        self.note = note

    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusLine(id="status")
        yield MetricsLine(id="metrics")
        with Horizontal(id="top"):
            yield CurvesPane(id="curves")
            yield SparsityPane(id="sparsity")
        yield SamplesPane(id="samples")
        yield Footer()
        yield LogFollower(self.run_dir, self.interval)

    def on_mount(self) -> None:
        self.sub_title = self.run_dir.name
        self.query_one(SparsityPane).query_one("#layer-filter").display = False
        self.query_one(StatusLine).note = self.note
        self.query_one(CurvesPane).focus()

    @property
    def follower(self) -> LogFollower:
        return self.query_one(LogFollower)

    def on_log_follower_updated(self, message: LogFollower.Updated) -> None:
        state = message.state
        self.query_one(StatusLine).show(state)
        self.query_one(MetricsLine).show(state)
        self.query_one(CurvesPane).show(state)
        self.query_one(SparsityPane).show(state)
        self.query_one(SamplesPane).show(state)

    def action_cycle_curve(self) -> None:
        self.query_one(CurvesPane).action_cycle(1)

    def action_pick_curve(self, index: int) -> None:
        names = self.follower.state.curve_names()
        if 1 <= index <= len(names):
            self.query_one(CurvesPane).select(names[index - 1])

    def action_filter(self) -> None:
        self.query_one(SparsityPane).open_filter()

    def action_back(self) -> None:
        box = self.query_one("#layer-filter")
        if box.display:
            self.query_one(SparsityPane).close_filter()
        elif self.from_list:
            self.dismiss()


class RunsScreen(Screen[None]):
    """A root of runs: status, model, method, target sparsity, best CIDEr-D. Enter opens one."""

    BINDINGS = [Binding("enter", "open_run", "Open run")]

    def __init__(self, root: Path, interval: float = 0.5) -> None:
        super().__init__()
        self.root = Path(root)
        self.interval = interval
        self.watch = RunsWatch(self.root)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="runs-info")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.root.name or str(self.root)
        table = self.query_one(DataTable)
        for key in ("run", "status", "model", "method", "target", "sparsity", "step", "best CIDEr-D", "started",
                    "duration"):
            table.add_column(key, key=key)
        self.poll()
        self.set_interval(max(1.0, self.interval * 2), self.poll)
        table.focus()

    def poll(self) -> None:
        if self.watch.poll():
            self._draw(self.watch.summaries())

    def _draw(self, runs: list[RunSummary]) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for r in runs:
            step = f"{r.step:,}" + (f"/{r.total_steps:,}" if r.total_steps else "")
            table.add_row(
                r.name,
                Text(r.status, STATUS_STYLE.get(r.status, "bold red")),
                r.model or "—",
                r.method or "—",
                Text(fmt_pct(r.target), justify="right"),
                Text(fmt_pct(r.sparsity), justify="right"),
                Text(step, justify="right"),
                Text(fmt(r.best_cider), justify="right"),
                time.strftime("%m-%d %H:%M", time.localtime(r.started)) if r.started else "—",
                Text(fmt_duration(r.duration_s), justify="right"),
                key=r.path,
            )
        if runs:
            table.move_cursor(row=min(row, len(runs) - 1))
        info = f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {self.sub_title}" if runs else "no runs yet"
        self.query_one("#runs-info", Static).update(Text(f" {info} — enter opens a run, escape comes back", "dim"))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(event.row_key.value)

    def action_open_run(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            self._open(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _open(self, path: str | None) -> None:
        if path:
            self.app.push_screen(RunScreen(Path(path), self.interval, from_list=True))
