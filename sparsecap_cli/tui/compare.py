"""The monitor's compare screen: several runs' curves (loss, lr, validation metrics, sparsity) overlaid on shared axes
with a legend, the way W&B compares runs; EMA smoothing, log scale and zoom to the end of the runs by key; on a wide
terminal a second chart shows the next curve."""

from __future__ import annotations

from pathlib import Path

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Static, Tab, Tabs

from sparsecap_cli.tui.plot import braille_lines, chart_text
from sparsecap_cli.tui.text import fmt
from sparsecap_engine.curves import SMOOTHING, ZOOM, overlay
from sparsecap_engine.monitor_state import RunState, RunWatch

#: one colour per compared run, in the order the runs were picked
RUN_STYLES = ("bold cyan", "bold bright_magenta", "bold bright_yellow", "bold green", "bold bright_red", "bold blue",
              "bold white", "bold bright_green")
#: most runs one compare view draws (more lines on one braille chart are unreadable)
MAX_RUNS = len(RUN_STYLES)
#: terminal width from which a second chart (the next curve) is shown beside the first
WIDE = 160

COMPARE_HELP = """\\
[b]compare runs[/b]: the picked runs' curves on shared axes, one colour per run (legend on top)

[b]keys[/b]
  [b]←[/b] [b]→[/b] / [b]1[/b]–[b]9[/b] / click a tab   the curve: loss, lr, each validation metric, sparsity
  [b]e[/b]                 smoothing: off → 0.6 → 0.9 → 0.99 (TensorBoard's debiased EMA)
  [b]l[/b]                 log scale (log10 of positive values) on / off
  [b]z[/b]                 zoom to the last 50 %, 25 %, 10 % of the steps, then all of them
  [b]escape[/b]            back to the runs list
  [b]?[/b]                 this help

A terminal at least 160 columns wide shows the next curve beside the first.
Press [b]escape[/b] or [b]?[/b] to close."""


def curve_names(states: list[RunState]) -> list[str]:
    """Every curve any of the runs has, in first-seen order (loss, lr, metrics, sparsity)."""
    names: list[str] = []
    for state in states:
        for name in state.curve_names():
            if name not in names:
                names.append(name)
    return names or ["loss", "lr"]


class CompareChart(Widget):
    """One curve of several runs, each line in its run's colour."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.curve = ""
        self.lines: list[tuple[list[int], list[float]]] = []

    def plot(self, curve: str, lines: list[tuple[list[int], list[float]]]) -> None:
        self.curve, self.lines = curve, lines
        self.refresh()

    def render(self) -> RenderableType:
        if not any(values for _, values in self.lines):
            return Text(f"{self.curve}: no data in these runs yet", style="dim")
        chart = braille_lines(
            [(list(map(float, s)), v) for s, v in self.lines], self.size.width, self.size.height,
            x_fmt=lambda v: f"{v:,.0f}",
        )
        if chart is None:
            return Text("(too small)", style="dim")
        return chart_text(chart, RUN_STYLES)


class CompareScreen(Screen[None]):
    """Several runs, one curve at a time (two on wide terminals), overlaid."""

    HELP = COMPARE_HELP
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("left", "cycle(-1)", "Prev curve", show=False),
        Binding("right", "cycle(1)", "Next curve", show=False),
        Binding("e", "smooth", "Smoothing"),
        Binding("l", "log", "Log scale"),
        Binding("z", "zoom", "Zoom"),
        *[Binding(str(i), f"pick({i})", show=False) for i in range(1, 10)],
    ]

    def __init__(self, runs: list[Path], interval: float = 0.5) -> None:
        super().__init__()
        self.runs = [Path(r) for r in runs[:MAX_RUNS]]
        self.interval = interval
        self.watches = [RunWatch(r) for r in self.runs]
        self.curve = "loss"
        self.smoothing = 0.0
        self.log_scale = False
        self.zoom = 1.0
        self._names: list[str] = []

    @property
    def states(self) -> list[RunState]:
        return [w.state for w in self.watches]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Tabs(id="compare-tabs")
        yield Static(id="compare-legend")
        with Horizontal(id="compare-charts"):
            yield CompareChart(id="compare-main")
            yield CompareChart(id="compare-next")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"compare {len(self.runs)} runs"
        self.poll(force=True)
        self.set_interval(max(0.5, self.interval), self.poll)

    def on_resize(self) -> None:
        self._draw()

    def poll(self, force: bool = False) -> None:
        changed = [w.poll() for w in self.watches]
        if force or any(changed):
            self._sync_tabs()
            self._draw()

    def _sync_tabs(self) -> None:
        names = curve_names(self.states)
        if names == self._names:
            return
        self._names = names
        tabs = self.query_one(Tabs)
        tabs.clear()
        for i, name in enumerate(names):
            tabs.add_tab(Tab(f"{i + 1}:{name}", id=f"curve-{i}"))
        if self.curve not in names:
            self.curve = names[0]
        tabs.active = f"curve-{names.index(self.curve)}"

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        tab_id = event.tab.id or ""
        if tab_id.startswith("curve-"):
            index = int(tab_id.removeprefix("curve-"))
            if index < len(self._names) and self._names[index] != self.curve:
                self.curve = self._names[index]
                self._draw()

    def select(self, name: str) -> None:
        if name in self._names:
            self.curve = name
            self.query_one(Tabs).active = f"curve-{self._names.index(name)}"
            self._draw()

    def action_cycle(self, delta: int) -> None:
        names = self._names or curve_names(self.states)
        i = names.index(self.curve) if self.curve in names else 0
        self.select(names[(i + delta) % len(names)])

    def action_pick(self, index: int) -> None:
        if 1 <= index <= len(self._names):
            self.select(self._names[index - 1])

    def action_smooth(self) -> None:
        self.smoothing = SMOOTHING[(SMOOTHING.index(self.smoothing) + 1) % len(SMOOTHING)]
        self._draw()

    def action_log(self) -> None:
        self.log_scale = not self.log_scale
        self._draw()

    def action_zoom(self) -> None:
        self.zoom = ZOOM[(ZOOM.index(self.zoom) + 1) % len(ZOOM)]
        self._draw()

    def lines(self, curve: str) -> list[tuple[list[int], list[float]]]:
        """The runs' ``curve`` as drawn now (smoothing, zoom, log scale applied)."""
        raw = []
        for state in self.states:
            series = state.curve(curve)
            raw.append((series.steps, series.values) if series is not None else None)
        return overlay(raw, self.smoothing, self.zoom, self.log_scale)

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        self.query_one("#compare-legend", Static).update(self.legend())
        self.query_one("#compare-main", CompareChart).plot(self.curve, self.lines(self.curve))
        nxt = self.query_one("#compare-next", CompareChart)
        wide = self.size.width >= WIDE and len(self._names) > 1
        nxt.display = wide
        if wide:
            following = self._names[(self._names.index(self.curve) + 1) % len(self._names)]
            nxt.plot(following, self.lines(following))

    def legend(self) -> Text:
        """``━ run-a 1.234  ━ run-b 1.301 · smoothing 0.9 · log10 · last 25 %``: each run's last value of the curve."""
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, state in enumerate(self.states):
            series = state.curve(self.curve)
            text.append(f"━ {state.name}", RUN_STYLES[i])
            text.append(f" {fmt(series.last)}  " if series is not None and len(series) else " (no data)  ", "dim")
        extras = [f"smoothing {self.smoothing:g}" if self.smoothing else "", "log10" if self.log_scale else "",
                  f"last {self.zoom:.0%} of the steps" if self.zoom < 1.0 else ""]
        shown = " · ".join(e for e in extras if e)
        if shown:
            text.append("· " + shown, "italic")
        return text
