"""The monitor's widgets, one per pane. Each takes the folded :class:`RunState` in ``show(state)`` and redraws only
the parts whose version changed; :class:`LogFollower` tails the log and pushes the state in as a message."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Group, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from sparsecap_cli.tui.images import half_block, placeholder
from sparsecap_cli.tui.plot import braille_chart
from sparsecap_cli.tui.text import bar, curve_summary, extras_text, fmt_pct, score, short_layer_name, status_fields
from sparsecap_engine.monitor_state import RunState, RunWatch, Series

STATUS_STYLE = {
    "waiting": "bold yellow",
    "running": "bold green",
    "completed": "bold cyan",
    "stopped": "bold yellow",
    "interrupted": "bold yellow",
    "crashed": "bold red",
    "stale": "yellow",
}


def heat_color(fraction: float) -> Style:
    """Sparsity → colour: dense blue, half-pruned yellow, fully pruned red."""
    stops = ((0.0, (60, 90, 170)), (0.5, (220, 200, 70)), (1.0, (230, 70, 50)))
    f = min(1.0, max(0.0, fraction))
    for (f0, c0), (f1, c1) in zip(stops, stops[1:], strict=False):
        if f <= f1:
            t = (f - f0) / (f1 - f0)
            r, g, b = (round(a + (b_ - a) * t) for a, b_ in zip(c0, c1, strict=True))
            return Style(color=f"rgb({r},{g},{b})")
    return Style(color="rgb(230,70,50)")


def target_bar(overall: float | None, target: float | None, width: int) -> Text:
    """``████████░░░┃░░`` — the overall sparsity filled, the target marked with ``┃``."""
    filled = round((overall or 0.0) * width)
    mark = min(width - 1, round(target * width)) if target is not None else -1
    text = Text(no_wrap=True)
    for i in range(width):
        if i == mark:
            text.append("┃", "bold white")
        else:
            text.append("█" if i < filled else "░", heat_color(overall or 0.0) if i < filled else "dim")
    return text


def heat_strip(values: list[float], cells: int) -> Text:
    """One coloured cell per tensor; when there are more tensors than ``cells``, each cell averages a group."""
    group = max(1, -(-len(values) // cells))
    text = Text()
    for i in range(0, len(values), group):
        chunk = values[i : i + group]
        text.append("█", heat_color(sum(chunk) / len(chunk)))
    if group > 1:
        text.append(f" ({group} tensors per cell)", "dim")
    return text


class _Shows:
    """Mixin: remember which (state, version) a pane last drew, to skip redraws that would change nothing."""

    _seen: tuple[int, int] | None = None

    def changed(self, state: RunState, *parts: str) -> bool:
        key = (id(state), sum(state.versions.get(p, 0) for p in parts))
        if key == self._seen:
            return False
        self._seen = key
        return True


class LogFollower(Widget):
    """Non-visual: tails a run's events.jsonl every ``interval`` seconds; posts :class:`LogFollower.Updated`."""

    DEFAULT_CSS = "LogFollower { display: none; }"

    class Updated(Message):
        """New events were folded into ``state``."""

        def __init__(self, state: RunState) -> None:
            super().__init__()
            self.state = state

    def __init__(self, run_dir: Path, interval: float = 0.5) -> None:
        super().__init__()
        self.watch = RunWatch(run_dir)
        self.interval = interval

    @property
    def state(self) -> RunState:
        return self.watch.state

    def on_mount(self) -> None:
        if not self.poll():  # draw the waiting state too
            self.post_message(self.Updated(self.watch.state))
        self.set_interval(self.interval, self.poll)

    def poll(self) -> bool:
        """Read what was appended; True (and a message) when the state changed."""
        if self.watch.poll():
            self.post_message(self.Updated(self.watch.state))
            return True
        return False


class StatusLine(Static, _Shows):
    """Status, step, epoch, items/s, ETA, device, last checkpoint (+ a note, e.g. the attached job's state)."""

    note: reactive[str] = reactive("")

    def show(self, state: RunState) -> None:
        self._state = state
        if self.changed(state, "status") or state.status in ("running", "stale"):  # "last event … ago" ticks
            self._draw()

    def watch_note(self) -> None:
        if getattr(self, "_state", None) is not None:
            self._draw()

    def _draw(self) -> None:
        state = self._state
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f" {state.status} ", STATUS_STYLE.get(state.status, "bold red") + " reverse")
        if self.note:
            text.append(f"  {self.note}", "bold magenta")
        for label, value in status_fields(state, getattr(self.app, "clock", time.time)()):
            text.append(f"  {label} ", "dim")
            text.append(value, "bold" if label != "skipped lines" else "bold red")
        if state.message:
            text.append(f"  {state.message}", "italic")
        elif state.status == "waiting":
            text.append("  waiting for events.jsonl…", "italic")
        self.update(text)


class CurveChart(Widget):
    """A braille line chart of one :class:`Series` with y and x axes, sized to the widget."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series: Series | None = None
        self.name_ = ""

    def plot(self, name: str, series: Series | None) -> None:
        self.name_, self.series = name, series
        self.refresh()

    def render(self) -> RenderableType:
        s = self.series
        if s is None or not len(s):
            return Text(f"{self.name_}: waiting for data…", style="dim")
        chart = braille_chart(s.steps, s.values, self.size.width, self.size.height)
        if chart is None:
            return Text("(too small)", style="dim")
        text = Text(no_wrap=True, overflow="crop")
        for label, row in zip(chart.y_labels, chart.plot, strict=True):
            text.append(label, "dim")
            text.append(row + "\n", "bold cyan")
        text.append(chart.x_axis + "\n", "dim")
        text.append(chart.x_labels, "dim")
        return text


class TabStrip(Static):
    """Tabs drawn as one line of text (``spans``: start column, end column, name); a click picks the one under it."""

    class Picked(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.spans: list[tuple[int, int, str]] = []

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        for start, end, name in self.spans:
            if start <= offset.x < end:
                self.post_message(self.Picked(name))
                return


class CurvesPane(Vertical, _Shows):
    """Training curves (loss, lr per step) and validation metrics (per evaluation), one at a time, switchable."""

    can_focus = True
    BINDINGS = [
        Binding("left", "cycle(-1)", "Prev curve", show=False),
        Binding("right", "cycle(1)", "Next curve", show=False),
    ]
    selected: reactive[str] = reactive("loss", init=False)

    def compose(self) -> ComposeResult:
        yield TabStrip(id="curve-tabs")
        yield Static(id="curve-legend")
        yield CurveChart(id="chart")

    def on_tab_strip_picked(self, message: TabStrip.Picked) -> None:
        self.select(message.name)

    def on_mount(self) -> None:
        self.border_title = "curves"
        self._state: RunState | None = None

    def show(self, state: RunState) -> None:
        self._state = state
        if self.changed(state, "curves"):
            self._draw()

    def action_cycle(self, delta: int) -> None:
        names = self._state.curve_names() if self._state else ["loss", "lr"]
        i = names.index(self.selected) if self.selected in names else 0
        self.selected = names[(i + delta) % len(names)]

    def select(self, name: str) -> None:
        self.selected = name

    def watch_selected(self) -> None:
        self._draw()

    def _draw(self) -> None:
        state = self._state
        names = state.curve_names() if state else ["loss", "lr"]
        tabs = Text(no_wrap=True, overflow="ellipsis")
        strip = self.query_one("#curve-tabs", TabStrip)
        strip.spans = []
        for i, name in enumerate(names, 1):
            style = "bold reverse" if name == self.selected else "dim"
            label = f" {i}:{name} "
            strip.spans.append((len(tabs), len(tabs) + len(label), name))
            tabs.append(label, style)
            tabs.append(" ")
        strip.update(tabs)
        series = state.curve(self.selected) if state else None
        legend = curve_summary(self.selected, series) if series is not None else f"{self.selected}: no data yet"
        self.query_one("#curve-legend", Static).update(Text(legend, style="italic", no_wrap=True, overflow="ellipsis"))
        self.query_one(CurveChart).plot(self.selected, series)


class SparsityPane(Vertical, _Shows):
    """Overall sparsity vs target, a heat strip of every pruned tensor, and a filterable per-layer table."""

    filter_text: reactive[str] = reactive("", init=False)

    def compose(self) -> ComposeResult:
        yield Static(id="overall")
        yield Static(id="heat")
        yield Input(placeholder="filter layers (enter: apply, esc: clear)", id="layer-filter")
        table: DataTable = DataTable(id="layers", cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        self.border_title = "sparsity"
        self._state: RunState | None = None
        table = self.query_one(DataTable)
        table.add_column("sparsity", key="sparsity")
        table.add_column("", key="bar")
        table.add_column("layer", key="layer")

    def show(self, state: RunState) -> None:
        self._state = state
        if self.changed(state, "sparsity"):
            self._draw()

    def watch_filter_text(self) -> None:
        self._draw_table()

    def on_resize(self) -> None:
        self._draw_table()

    def _name_width(self) -> tuple[int, int]:
        """(bar width, layer-name width) for the pane's width: names get what the sparsity column and the bar leave
        (cell padding included); below 24 columns for names the bar goes first."""
        inner = (self.content_size.width or 40) - 2  # the table's scrollbar gutter
        bar_w = 10
        name_w = inner - 7 - bar_w - 3 * 2
        if name_w < 24:
            bar_w, name_w = 0, inner - 7 - 2 * 2
        return bar_w, max(8, name_w)

    def _draw(self) -> None:
        state = self._state
        sp = state.sparsity if state else None
        overall = self.query_one("#overall", Static)
        heat = self.query_one("#heat", Static)
        if sp is None:
            target = state.target if state else None
            msg = "no sparsity events yet" if target is not None else "no sparsity events (dense run)"
            line = Text(msg, style="dim")
            if target is not None:
                line.append(f"  target {fmt_pct(target)}", "bold")
            overall.update(line)
            heat.update("")
        else:
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append("overall ", "dim")
            line.append(fmt_pct(sp.overall), "bold")
            line.append("  target ", "dim")
            line.append(fmt_pct(state.target), "bold")
            if sp.overall is not None and state.target is not None:
                gap = 100 * (sp.overall - state.target)
                line.append(f"  {gap:+.1f} pts", "green" if gap >= -0.5 else "yellow")
            line.append("\n")
            line.append_text(target_bar(sp.overall, state.target, 20))
            line.append(f"  step {sp.step:,} · {len(sp.layers)} tensors", "dim")
            if extras_text(sp.extra):
                line.append("\n" + extras_text(sp.extra), "dim")
            overall.update(line)
            heat.update(heat_strip(list(sp.layers.values()), 3 * max(8, heat.size.width or 40)))
        self._draw_table()

    def _draw_table(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        sp = self._state.sparsity if self._state else None
        table.display = sp is not None
        if sp is None:
            return
        needle = self.filter_text.lower()
        bar_w, name_w = self._name_width()
        if ("bar" in table.columns) != bool(bar_w):  # the bar column comes and goes with the width
            table.clear(columns=True)
            table.add_column("sparsity", key="sparsity")
            if bar_w:
                table.add_column("", key="bar")
            table.add_column("layer", key="layer")
        for name, value in sp.layers.items():
            if needle and needle not in name.lower():
                continue
            cells = [Text(fmt_pct(value), justify="right"), short_layer_name(name, name_w)]
            if bar_w:
                cells.insert(1, Text(bar(value, bar_w), heat_color(value)))
            table.add_row(*cells, key=name)
        table.border_subtitle = f"filter: {self.filter_text}" if self.filter_text else ""

    def open_filter(self) -> None:
        box = self.query_one("#layer-filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def close_filter(self) -> None:
        box = self.query_one("#layer-filter", Input)
        box.value = ""
        self.filter_text = ""
        box.display = False
        self.query_one(DataTable).focus()


class SamplesPane(VerticalScroll, _Shows):
    """The latest validation samples: the image at low resolution, the generated caption, the references."""

    def compose(self) -> ComposeResult:
        yield Static(id="samples-body")

    #: width of one sample card; a wider pane lays the cards side by side
    CARD_WIDTH = 110

    def on_mount(self) -> None:
        self.border_title = "samples"
        self._state: RunState | None = None
        self._columns = 0

    def on_resize(self) -> None:
        if self._state is not None and self._columns != self.columns():
            self._draw(self._state)

    def columns(self) -> int:
        """Cards per row: one per ``CARD_WIDTH`` columns of the pane (at least one)."""
        return max(1, (self.content_size.width or self.CARD_WIDTH) // self.CARD_WIDTH)

    def show(self, state: RunState) -> None:
        if not self.changed(state, "samples"):
            return
        self._draw(state)

    def _draw(self, state: RunState) -> None:
        self._state = state
        self._columns = self.columns()
        body = self.query_one("#samples-body", Static)
        if not state.samples:
            body.update(Text("no samples yet (they come with each validation)", style="dim"))
            return
        self.border_title = f"samples · step {state.samples_step:,}"
        cards: list[RenderableType] = []
        for i, item in enumerate(state.samples, 1):
            image_path = str(item.get("image", ""))
            picture = (half_block(_image_file(image_path, state.path)) if image_path else None) or placeholder()
            words = Text()
            name = Path(image_path).name or f"image {item.get('image_id', '?')}"
            words.append(f"{i}. {name}", "bold")
            if item.get("image_id") is not None:
                words.append(f"  (id {item['image_id']})", "dim")
            words.append("\n")
            words.append("caption ", "dim")
            words.append(str(item.get("caption", "")) + "\n", "bold green")
            for ref in item.get("refs") or []:
                words.append("ref     ", "dim")
                words.append(str(ref) + "\n")
            grid = Table.grid(padding=(0, 2))
            grid.add_column(width=16, no_wrap=True)
            grid.add_column(ratio=1)
            grid.add_row(picture, words)
            cards.append(grid)
        if self._columns == 1:
            body.update(Group(*[part for card in cards for part in (card, Text(""))][:-1]))
            return
        rows = Table.grid(padding=(0, 3), expand=True)
        for _ in range(self._columns):
            rows.add_column(ratio=1)
        for start in range(0, len(cards), self._columns):
            chunk = cards[start : start + self._columns]
            rows.add_row(*chunk, *[Text("")] * (self._columns - len(chunk)))
            rows.add_row(*[Text("")] * self._columns)
        body.update(rows)


class MetricsLine(Static, _Shows):
    """The latest validation metrics and the best CIDEr-D so far."""

    def show(self, state: RunState) -> None:
        if self.changed(state, "metrics", "status"):
            self.update(metrics_text(state))


def _image_file(path: str, run_path: str) -> str:
    """An absolute path as is; a relative one from the working directory, else from the run directory."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    return str(Path(run_path) / p)


def metrics_text(state: RunState) -> Text:
    """``CIDEr-D 0.812  BLEU-4 0.301 @ step 3,000  best CIDEr-D 0.83 @ 2,500``."""
    text = Text(no_wrap=True, overflow="ellipsis")
    info = [state.model_name or "?", state.method or "?"]
    if state.params:
        info.append(f"{state.params:,} params")
    text.append(" · ".join(info) + "   ", "dim")
    if not state.metrics:
        text.append("no validation yet", "dim")
    for name, value in state.metrics.items():  # scores with 4 decimals, as eval and train print them
        text.append(f"{name} ", "dim")
        text.append(f"{score(value)}  ", "bold")
    if state.metrics_step is not None:
        text.append(f"@ step {state.metrics_step:,}", "dim")
    if state.best_cider is not None:
        text.append("  best CIDEr-D ", "dim")
        text.append(score(state.best_cider), "bold cyan")
        if state.best_step is not None:
            text.append(f" @ {state.best_step:,}", "dim")
    return text
