"""The sweep screens of the monitor: one sweep (cells with status, the results table, CIDEr vs sparsity) and a folder
of sweeps. Both poll their folder on a timer through :mod:`sparsecap_engine.sweep_state`; enter on a cell opens its
run directory in the ordinary :class:`~sparsecap_cli.tui.screens.RunScreen`."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, Static

from sparsecap_cli.tui.plot import braille_lines, chart_text
from sparsecap_cli.tui.screens import RunScreen
from sparsecap_cli.tui.sweep_text import (
    RESULT_COLUMNS,
    SWEEPS_COLUMNS,
    budget_text,
    cell_fields,
    fmt_target,
    progress_text,
    result_fields,
    sweeps_fields,
)
from sparsecap_cli.tui.text import fmt
from sparsecap_cli.tui.widgets import STATUS_STYLE
from sparsecap_engine.monitor_roots import is_run_dir
from sparsecap_engine.sweep_state import CellState, Clock, SweepState, SweepsWatch, SweepWatch

CELL_STATUS_STYLE = {**STATUS_STYLE, "pending": "dim", "skipped": "yellow", "running": "bold green"}
METHOD_STYLE = {
    "dense": "bold white",
    "supermask": "bold green",
    "gradual": "bold cyan",
    "magnitude": "bold yellow",
    "lottery": "bold magenta",
    "snip": "bold red",
}
PALETTE = ("bold blue", "bold bright_magenta", "bold bright_yellow", "bold bright_cyan")
CELL_COLUMNS = ("cell", "status", "steps", "time", "message")  # method and target: in the id and the detail line


def status_text(status: str) -> Text:
    return Text(status, CELL_STATUS_STYLE.get(status, "bold red"))


def method_style(method: str, methods: list[str]) -> str:
    if method in METHOD_STYLE:
        return METHOD_STYLE[method]
    others = [m for m in methods if m not in METHOD_STYLE]
    return PALETTE[others.index(method) % len(PALETTE)] if method in others else PALETTE[0]


def sync_table(table: DataTable, rows: list[tuple[str, tuple[RenderableType, ...]]]) -> None:
    """Show ``rows`` (key, cells) in ``table``: same keys in the same order → update the cells that changed (cursor
    and scroll stay put); else rebuild, keeping the cursor's row number."""
    keys = [key for key, _ in rows]
    if [k.value for k in table.rows] == keys:
        columns = list(table.columns)
        for key, cells in rows:
            old = table.get_row(key)
            for column, new, was in zip(columns, cells, old, strict=True):
                if str(new) != str(was) or getattr(new, "style", None) != getattr(was, "style", None):
                    table.update_cell(key, column, new)
        return
    cursor = table.cursor_row
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if rows:
        table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))


class SweepChart(Widget):
    """CIDEr (y) vs sparsity (x): one coloured line per method, points marked, dense as a horizontal line."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state: SweepState | None = None

    def plot(self, state: SweepState) -> None:
        self.state = state
        self.refresh()

    def render(self) -> RenderableType:
        state = self.state
        span = state.x_range() if state is not None else None
        series = state.series() if state is not None else {}
        dense = state.dense_cider if state is not None else None
        if state is None or span is None or (dense is None and not any(series.values())):
            return Text("CIDEr vs sparsity: waiting for results…", style="dim")
        lines: list[tuple[list[float], list[float]]] = []
        styles: list[str] = []
        if dense is not None:
            lines.append(([span[0], span[1]], [dense, dense]))
            styles.append(METHOD_STYLE["dense"])
        for method, points in series.items():
            lines.append(([p.sparsity for p in points], [p.cider for p in points]))
            styles.append(method_style(method, state.methods))
        markers = [dense is None or i > 0 for i in range(len(lines))]
        chart = braille_lines(
            lines, self.size.width, self.size.height, x_span=span, x_fmt=lambda v: f"{100 * v:.4g}%", markers=markers
        )
        if chart is None:
            return Text("(too small)", style="dim")
        return chart_text(chart, styles)


def legend_text(state: SweepState) -> Text:
    """``━ dense 0.679  ━ supermask  ━ gradual (no results)`` in the lines' colours."""
    text = Text(no_wrap=True, overflow="ellipsis")
    dense = state.dense_cider
    text.append("━ dense", METHOD_STYLE["dense"] if dense is not None else "dim")
    text.append(f" {fmt(dense)}  " if dense is not None else " (no result)  ", "dim")
    for method, points in state.series().items():
        text.append(f"━ {method}", method_style(method, state.methods) if points else "dim")
        text.append("  " if points else " (no results)  ", "dim")
    return text


class SweepScreen(Screen[None]):
    """One sweep: status line, cells table (enter opens a cell's run), CIDEr-vs-sparsity plot, results table."""

    BINDINGS = [
        Binding("enter", "open_cell", "Open cell's run"),
        Binding("tab", "app.focus_next", "Next table"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(
        self, sweep_dir: Path, interval: float = 0.5, from_list: bool = False, clock: Clock = time.time
    ) -> None:
        super().__init__()
        self.sweep_dir = Path(sweep_dir)
        self.interval = interval
        self.from_list = from_list
        self.clock = clock
        self.sweep_watch = SweepWatch(self.sweep_dir, clock=clock)

    @property
    def state(self) -> SweepState:
        return self.sweep_watch.state

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="sweep-status")
        with Horizontal(id="sweep-top"):
            with Vertical(id="cells-pane"):
                yield DataTable(id="cells", cursor_type="row", zebra_stripes=True)
                yield Static(id="cell-detail")
            with Vertical(id="plot-pane"):
                yield Static(id="plot-legend")
                yield SweepChart(id="sweep-chart")
        with Vertical(id="results-pane"):
            yield DataTable(id="results", cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = self.state.name
        self.query_one("#cells-pane").border_title = "cells"
        self.query_one("#plot-pane").border_title = "CIDEr vs sparsity"
        self.query_one("#results-pane").border_title = "results · test split, greedy"
        cells = self.query_one("#cells", DataTable)
        for key in CELL_COLUMNS:
            cells.add_column(key, key=key)
        results = self.query_one("#results", DataTable)
        for key in RESULT_COLUMNS:
            results.add_column(key, key=key)
        self.sweep_watch.poll()
        self.draw()
        self.set_interval(self.interval, self.poll)
        cells.focus()

    def poll(self) -> bool:
        """Re-read the folder; redraw what changed (the running cells' time column ticks every poll)."""
        if self.sweep_watch.poll():
            self.draw()
            return True
        if any(c.status == "running" for c in self.state.cells.values()):
            self._draw_cells()
        return False

    def draw(self) -> None:
        state = self.state
        self.sub_title = state.name
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f" {state.status} ", CELL_STATUS_STYLE.get(state.status, "bold red") + " reverse")
        line.append(f"  {progress_text(state)}", "bold")
        if state.budget:
            line.append(f"  budget {budget_text(state.budget)}", "dim")
        if state.jobs is not None:
            line.append(f"  jobs {state.jobs}" + (f" ({state.launcher})" if state.launcher else ""), "dim")
        problems = [p for p in (state.plan_error, state.results_error) if p]
        if state.malformed:
            problems.append(f"skipped lines {state.malformed}")
        if problems:
            line.append("  " + "; ".join(problems), "bold red")
        if state.message:
            line.append(f"  {state.message}", "italic")
        self.query_one("#sweep-status", Static).update(line)
        self._draw_cells()
        rows = []
        seen: set[str] = set()
        for i, row in enumerate(state.result_rows()):
            fields = result_fields(state, row)
            method = fields[0]
            cells = (
                Text(method, method_style(method, state.methods)),
                *(Text(f, justify="right") for f in fields[1:8]),
                status_text(fields[8]),
            )
            key = str(row.get("cell") or f"{method}-{fields[1]}")
            key = key if key not in seen else f"{key}#{i}"  # a row key must be unique, results.json may repeat one
            seen.add(key)
            rows.append((key, cells))
        results = self.query_one("#results", DataTable)
        sync_table(results, rows)
        pane = self.query_one("#results-pane")
        pane.border_subtitle = f"{len(rows)} of {len(state.cells)} cells" if state.cells else ""
        self.query_one("#plot-legend", Static).update(legend_text(state))
        self.query_one(SweepChart).plot(state)

    def _draw_cells(self) -> None:
        now = self.clock()
        rows = []
        for cell in self.state.cells.values():
            cid, _, _, status, steps, elapsed, message = cell_fields(cell, now)
            cells = (
                cid,
                status_text(status),
                Text(steps, justify="right"),
                Text(elapsed, justify="right"),
                Text(message, "italic"),
            )
            rows.append((cell.id, cells))
        sync_table(self.query_one("#cells", DataTable), rows)
        self._draw_detail()

    def _draw_detail(self) -> None:
        """The highlighted cell: method, target, budget, message (the table cuts long messages)."""
        cell = self._cell_at_cursor()
        text = Text(no_wrap=False)
        if cell is not None:
            text.append(f"{cell.id}", "bold")
            about = [cell.method] if cell.method == "dense" else [cell.method, f"target {fmt_target(cell.target)}"]
            if cell.budget:
                about.append(cell.budget)
            text.append("  " + " · ".join(about), "dim")
            if cell.message:
                text.append(f"\n{cell.message}", CELL_STATUS_STYLE.get(cell.status, "bold red"))
            text.append("  (enter: open its run)" if cell.status != "pending" else "  (not started)", "dim")
        self.query_one("#cell-detail", Static).update(text)

    def _cell_at_cursor(self) -> CellState | None:
        table = self.query_one("#cells", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.state.cells.get(str(key))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "cells":
            self._draw_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.open_cell(str(event.row_key.value))

    def action_open_cell(self) -> None:
        table = self.focused if isinstance(self.focused, DataTable) else self.query_one("#cells", DataTable)
        if table.row_count:
            self.open_cell(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    def open_cell(self, cell_id: str) -> None:
        """Push the cell's run directory in the run screen (escape comes back)."""
        cell = self.state.cells.get(cell_id)
        run_dir = self.sweep_dir / (cell.run if cell is not None else cell_id)
        if not run_dir.is_dir() or not is_run_dir(run_dir):
            self.notify(f"{cell_id}: no run directory yet", severity="warning")
            return
        self.app.push_screen(RunScreen(run_dir, self.interval, from_list=True))

    def action_back(self) -> None:
        if self.from_list:
            self.dismiss()


class SweepsScreen(Screen[None]):
    """A folder of sweeps: status, cells done, running, failed, best result. Enter opens one."""

    BINDINGS = [Binding("enter", "open_sweep", "Open sweep")]

    def __init__(self, root: Path, interval: float = 0.5, clock: Clock = time.time) -> None:
        super().__init__()
        self.root = Path(root)
        self.interval = interval
        self.clock = clock
        self.sweeps_watch = SweepsWatch(self.root, clock=clock)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="sweeps-info")
        yield DataTable(id="sweeps", cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = self.root.name or str(self.root)
        table = self.query_one(DataTable)
        for key in SWEEPS_COLUMNS:
            table.add_column(key, key=key)
        self.poll()
        self.set_interval(max(1.0, self.interval * 2), self.poll)
        table.focus()

    def poll(self) -> None:
        if not self.sweeps_watch.poll():
            return
        sweeps = self.sweeps_watch.summaries()
        rows = []
        for s in sweeps:
            name, status, *rest = sweeps_fields(s)
            cells = (name, status_text(status), *(Text(f, justify="right") for f in rest[:-1]), rest[-1])
            rows.append((s.path, cells))
        sync_table(self.query_one(DataTable), rows)
        n = len(sweeps)
        info = f"{n} sweep{'s' if n != 1 else ''} in {self.sub_title}" if n else "no sweeps yet"
        self.query_one("#sweeps-info", Static).update(Text(f" {info} — enter opens a sweep, escape comes back", "dim"))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(event.row_key.value)

    def action_open_sweep(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            self._open(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _open(self, path: str | None) -> None:
        if path:
            self.app.push_screen(SweepScreen(Path(path), self.interval, from_list=True, clock=self.clock))
