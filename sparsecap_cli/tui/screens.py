"""The monitor's screens: one run, a root of runs, the help screen and the stop-or-detach question."""

from __future__ import annotations

import time
from pathlib import Path

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Static

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
from sparsecap_engine.errors import SparsecapError
from sparsecap_engine.humanize import human_bytes
from sparsecap_engine.monitor_roots import SORT_KEYS, RunSummary, RunsWatch, filter_runs, sort_runs
from sparsecap_engine.runs import delete_run, folder_bytes, holder_alive

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


RUNS_HELP = """\
[b]runs list[/b]: every run under the folder (a new one appears within a second or two)

  [b]status[/b]    running · completed · target-missed · stopped · failed · [b]crashed[/b] (its process is gone)
            · [b]stale[/b] (no event for 15 min from a process on another host)
  [b]started[/b]   the first event's time; [b]duration[/b]: how long it ran, or has been running

[b]keys[/b]
  [b]enter[/b]             open the selected run ([b]escape[/b] comes back)
  [b]s[/b]                 sort by the next column (started, name, status, best CIDEr-D, sparsity,
                    duration); [b]S[/b] reverses; a click on a column header sorts by it
  [b]/[/b]                 filter: runs whose name, status, model or method contain every word
                    ([b]enter[/b] back to the list, [b]escape[/b] clears)
  [b]d[/b]                 delete the selected run (asks first; a running run is refused)
  [b]space[/b]             mark / unmark the selected run ([b]●[/b])
  [b]c[/b]                 compare the marked runs' curves (all runs shown when fewer than two are marked)
  [b]?[/b]                 this help
  [b]q[/b]                 quit

Press [b]escape[/b] or [b]?[/b] to close."""


class HelpScreen(ModalScreen[None]):
    """Keys and what each pane shows (the text of the screen it was opened from)."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, text: str = HELP) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(self.text, id="help-text")

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


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question (deleting a run): ``y`` / ``n`` / escape, or the buttons."""

    BINDINGS = [
        Binding("y", "choose(True)", "Yes"),
        Binding("n", "choose(False)", "No"),
        Binding("escape", "choose(False)", "Cancel"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question, id="confirm-text")
            with Horizontal(id="confirm-buttons"):
                yield Button("Delete (y)", id="yes", variant="error")
                yield Button("Keep (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#confirm-box").border_title = "confirm"
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_choose(self, yes: bool) -> None:
        self.dismiss(yes)


class RunScreen(Screen[None]):
    """One run: status line, curves, sparsity, samples. Fed by its :class:`LogFollower`."""

    HELP = HELP

    BINDINGS = [
        Binding("tab", "app.focus_next", "Pane"),
        Binding("c", "cycle_curve", "Curve"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "back", "Back"),
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
        yield Footer(show_command_palette=False)
        yield LogFollower(self.run_dir, self.interval)

    #: below this width the curves and sparsity panes stack (each gets the full width) and the screen scrolls
    NARROW = 70

    def on_resize(self) -> None:
        self.set_class(self.size.width < self.NARROW, "-narrow")

    def on_mount(self) -> None:
        self.sub_title = self.run_dir.name
        self.set_class(self.size.width < self.NARROW, "-narrow")
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


#: runs-list column → sort key (columns without one do not sort)
COLUMN_SORT = {"run": "name", "status": "status", "sparsity": "sparsity", "best CIDEr-D": "best CIDEr-D",
               "started": "started", "duration": "duration"}


class RunsScreen(Screen[None]):
    """A root of runs: status, model, method, target sparsity, best CIDEr-D, start and duration. Enter opens one;
    ``s`` sorts, ``/`` filters, ``d`` deletes (after a question)."""

    HELP = RUNS_HELP
    BINDINGS = [
        Binding("enter", "open_run", "Open run"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("d", "delete", "Delete"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, root: Path, interval: float = 0.5) -> None:
        super().__init__()
        self.root = Path(root)
        self.interval = interval
        self.watch = RunsWatch(self.root)
        self.sort_key = "started"
        self.sort_reverse = False
        self.query_text = ""
        self.runs: list[RunSummary] = []
        self.shown: list[RunSummary] = []
        #: runs marked (space) for the compare view, in the order they were marked
        self.marked: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="runs-info")
        yield Input(placeholder="filter: words in name, status, model, method (enter: back to the list, escape: "
                    "clear)", id="runs-filter")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = self.root.name or str(self.root)
        self.query_one("#runs-filter").display = False
        table = self.query_one(DataTable)
        for key in ("run", "status", "model", "method", "target", "sparsity", "step", "best CIDEr-D", "started",
                    "duration"):
            table.add_column(key, key=key)
        self.poll()
        self.set_interval(max(1.0, self.interval * 2), self.poll)
        table.focus()

    def poll(self) -> None:
        if self.watch.poll():
            self.runs = self.watch.summaries()
            self._draw()

    def _draw(self) -> None:
        table = self.query_one(DataTable)
        selected = self.selected_path()
        self.shown = sort_runs(filter_runs(self.runs, self.query_text), self.sort_key, self.sort_reverse)
        table.clear()
        for r in self.shown:
            step = f"{r.step:,}" + (f"/{r.total_steps:,}" if r.total_steps else "")
            table.add_row(
                Text(f"● {r.name}", "bold") if r.path in self.marked else r.name,
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
        paths = [r.path for r in self.shown]
        if paths:
            table.move_cursor(row=paths.index(selected) if selected in paths else 0)
        self._info()

    def _info(self) -> None:
        n, total = len(self.shown), len(self.runs)
        arrow = "↑" if self.sort_reverse else "↓"
        if not total:
            info = "no runs yet"
        elif self.query_text:
            info = f"{n} of {total} runs match “{self.query_text}”"
        else:
            info = f"{total} run{'s' if total != 1 else ''} in {self.sub_title}"
        if self.marked:
            info += f" · {len(self.marked)} marked (c compares them)"
        info += f" · sorted by {self.sort_key} {arrow} · enter open · space mark · c compare · ? help"
        self.query_one("#runs-info", Static).update(Text(f" {info}", "dim"))

    def selected_path(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(event.row_key.value)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = COLUMN_SORT.get(str(event.column_key.value))
        if key is None:
            return
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, False
        self._draw()

    def action_sort(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self.sort_reverse = False
        self._draw()

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._draw()

    def action_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "runs-filter":
            self.query_text = event.value.strip()
            self._draw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "runs-filter":
            self.query_one(DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if box.display or self.query_text:
            box.value = ""
            box.display = False
            self.query_text = ""
            self._draw()
            self.query_one(DataTable).focus()

    def action_delete(self) -> None:
        path = self.selected_path()
        run = next((r for r in self.shown if r.path == path), None)
        if run is None:
            return
        if run.status == "running" or holder_alive(Path(run.path)):
            self.notify(f"{run.name} is running: stop it before deleting it", severity="error")
            return
        size = human_bytes(folder_bytes(Path(run.path)))
        question = (f"Delete run [b]{escape(run.name)}[/b] ({run.status}, {size})?\n\n"
                    f"This removes {escape(run.path)} with its checkpoints, events and plots.")
        self.app.push_screen(ConfirmScreen(question), lambda yes: self._delete(run, yes))

    def _delete(self, run: RunSummary, yes: bool | None) -> None:
        if not yes:
            return
        try:
            freed = delete_run(Path(run.path))
        except SparsecapError as exc:
            self.notify(str(exc), severity="error")
            return
        if run.path in self.marked:
            self.marked.remove(run.path)
        self.notify(f"deleted {run.name} ({human_bytes(freed)})")
        self.poll()

    def action_mark(self) -> None:
        path = self.selected_path()
        if path is None:
            return
        if path in self.marked:
            self.marked.remove(path)
        else:
            self.marked.append(path)
        self._draw()

    def action_compare(self) -> None:
        """Compare the marked runs, or every run shown (the filter applies) when fewer than two are marked."""
        from sparsecap_cli.tui.compare import MAX_RUNS, CompareScreen

        picked = [p for p in self.marked if Path(p).is_dir()]
        if len(picked) < 2:
            picked = [r.path for r in self.shown]
        if len(picked) < 2:
            self.notify("compare needs two runs or more: mark them with space", severity="warning")
            return
        if len(picked) > MAX_RUNS:
            self.notify(f"comparing the first {MAX_RUNS} of {len(picked)} runs (mark the ones you want with space)")
        self.app.push_screen(CompareScreen([Path(p) for p in picked[:MAX_RUNS]], self.interval))

    def action_open_run(self) -> None:
        path = self.selected_path()
        if path:
            self._open(path)

    def _open(self, path: str | None) -> None:
        if path:
            self.app.push_screen(RunScreen(Path(path), self.interval, from_list=True))
