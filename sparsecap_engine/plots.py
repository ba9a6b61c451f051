"""PNG plots of a run, drawn from its event log (matplotlib Agg canvas; no global backend state touched)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any


def curves_png(events: Iterable[dict[str, Any]], title: str = "") -> bytes:
    """Training loss and learning rate per step (left) and validation metrics per evaluation (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps, loss, lr = [], [], []
    val: dict[str, tuple[list[int], list[float]]] = {}
    for e in events:
        if e.get("kind") == "train" and "loss" in e:
            steps.append(e["step"])
            loss.append(e["loss"])
            lr.append(e.get("lr", float("nan")))
        elif e.get("kind") == "val":
            for name, value in (e.get("metrics") or {}).items():
                xs, ys = val.setdefault(name, ([], []))
                xs.append(e["step"])
                ys.append(value)
    fig = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_val = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax_loss.plot(steps, loss, color="tab:blue", label="loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_lr = ax_loss.twinx()
    ax_lr.plot(steps, lr, color="tab:gray", linewidth=1, label="lr")
    ax_lr.set_ylabel("learning rate")
    for name, (xs, ys) in val.items():
        ax_val.plot(xs, ys, marker="o", label=name)
    ax_val.set_xlabel("step")
    ax_val.set_ylabel("validation")
    if val:
        ax_val.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
