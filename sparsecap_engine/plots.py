"""PNG plots of a run, drawn from its event log (matplotlib Agg canvas; no global backend state touched)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any


def curves_png(events: Iterable[dict[str, Any]], title: str = "") -> bytes:
    """Training loss and learning rate per step (left), validation metrics per evaluation (middle) and, for a
    pruning run, the sparsity of its hard masks per step with the target (right). Every series has a legend; a
    series of one point is drawn as a marker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps, loss, lr = [], [], []
    val: dict[str, tuple[list[int], list[float]]] = {}
    sparsity: dict[int, float] = {}
    target = None
    for e in events:
        kind = e.get("kind")
        if kind == "train" and "loss" in e:
            steps.append(e["step"])
            loss.append(e["loss"])
            lr.append(e.get("lr", float("nan")))
            if isinstance(e.get("sparsity"), int | float):
                sparsity[e["step"]] = float(e["sparsity"])
        elif kind == "val":
            for name, value in (e.get("metrics") or {}).items():
                xs, ys = val.setdefault(name, ([], []))
                xs.append(e["step"])
                ys.append(value)
        elif kind == "sparsity" and isinstance(e.get("overall"), int | float):
            sparsity.setdefault(e["step"], float(e["overall"]))
            target = e.get("target", target)
        elif kind == "run_start":
            target = ((e.get("config") or {}).get("prune") or {}).get("sparsity", target)
    panels = 3 if sparsity else 2
    fig = Figure(figsize=(5 * panels, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_val = fig.add_subplot(1, panels, 1), fig.add_subplot(1, panels, 2)

    def line(ax, xs, ys, **kw):
        return ax.plot(xs, ys, marker="o" if len(xs) == 1 else kw.pop("marker", None), **kw)

    handles = line(ax_loss, steps, loss, color="tab:blue", label="loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_lr = ax_loss.twinx()
    handles += line(ax_lr, steps, lr, color="tab:gray", linewidth=1, label="learning rate")
    ax_lr.set_ylabel("learning rate")
    if steps:
        ax_loss.legend(handles=handles, fontsize=8, loc="upper right")
    for name, (xs, ys) in val.items():
        ax_val.plot(xs, ys, marker="o", label=name)
    ax_val.set_xlabel("step")
    ax_val.set_ylabel("validation")
    if val:
        ax_val.legend(fontsize=8)
    if sparsity:
        ax_sp = fig.add_subplot(1, panels, 3)
        xs = sorted(sparsity)
        line(ax_sp, xs, [100 * sparsity[x] for x in xs], color="tab:red", label="sparsity (hard masks)")
        if isinstance(target, int | float):
            ax_sp.axhline(100 * target, color="black", linestyle="--", linewidth=1, label=f"target {target:.2%}")
        ax_sp.set_xlabel("step")
        ax_sp.set_ylabel("sparsity (%)")
        ax_sp.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
