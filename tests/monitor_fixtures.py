"""Fixture run directories for the monitor tests: deterministic events (fixed times), small PNG samples."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sparsecap_engine.config import RunConfig, to_toml

T0 = 1_700_000_000.0
LAYERS = [
    "encoder.proj.weight",
    "embed.weight",
    "att_lstm.weight_ih",
    "att_lstm.weight_hh",
    "attention.h2att.weight",
    "attention.alpha_net.weight",
    "lang_lstm.weight_ih",
    "lang_lstm.weight_hh",
    "logit.weight",
]


def write_image(path: Path, color: tuple[int, int, int], shape: str = "square") -> Path:
    """A 32×32 PNG: a coloured shape on grey."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (32, 32), (200, 200, 200))
    draw = ImageDraw.Draw(im)
    if shape == "circle":
        draw.ellipse((6, 6, 26, 26), fill=color)
    else:
        draw.rectangle((8, 8, 24, 24), fill=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def event(kind: str, step: int, t: float, **fields: Any) -> str:
    return json.dumps({"kind": kind, "time": t, "step": step, **fields}) + "\n"


def run_events(
    run: Path,
    steps: int = 400,
    done: int = 400,
    log_every: int = 10,
    val_every: int = 100,
    prune: dict[str, Any] | None = None,
    finished: bool = True,
) -> list[str]:
    """The lines a training (or pruning) run would have written after ``done`` of ``steps`` steps."""
    cfg = RunConfig()
    cfg.train.steps, cfg.train.batch_size, cfg.train.val_every = steps, 16, val_every
    cfg.prune = dict(prune or {})
    images = run / "images"
    a = write_image(images / "img_0001.png", (220, 40, 40), "circle")
    b = write_image(images / "img_0002.png", (40, 60, 220), "square")
    samples = [
        {
            "image": str(a),
            "image_id": 1,
            "caption": "a red circle on the left",
            "refs": ["a red ball at the left", "a small red circle"],
        },
        {
            "image": str(b),
            "image_id": 2,
            "caption": "a blue square in the middle",
            "refs": ["a blue square", "a big blue box in the centre"],
        },
    ]
    lines = [
        event(
            "run_start",
            0,
            T0,
            config=cfg.to_dict(),
            model={"name": "updown", "rnn_size": 64},
            device="cpu",
            params=123_456,
            train_images=800,
        )
    ]
    target = (prune or {}).get("sparsity")
    for step in range(log_every, done + 1, log_every):
        t = T0 + step * 0.5
        loss = 4.0 * math.exp(-step / 150) + 1.0 + 0.05 * math.sin(step / 7)
        lr = 5e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        lines.append(
            event(
                "train",
                step,
                t,
                epoch=round(step * 16 / 800, 3),
                loss=round(loss, 5),
                lr=round(lr, 7),
                items_per_s=160.0,
            )
        )
        if step % val_every == 0:
            cider = round(0.2 + 0.6 * step / steps, 4)
            lines.append(event("val", step, t + 0.1, metrics={"CIDEr-D": cider, "BLEU-4": round(cider / 3, 4)}))
            lines.append(event("samples", step, t + 0.1, items=samples))
            if target is not None:
                frac = min(1.0, step / (0.75 * steps))
                layers = {name: round(target * frac * (0.9 + 0.025 * i), 4) for i, name in enumerate(LAYERS)}
                lines.append(
                    event("sparsity", step, t + 0.1, overall=round(target * frac, 4), target=target, layers=layers)
                )
            lines.append(
                event("checkpoint", step, t + 0.2, path=str(run / "checkpoints" / "last.safetensors"), best=True)
            )
    if finished and done == steps:
        best = round(0.2 + 0.6, 4)
        lines.append(
            event("run_end", done, T0 + done * 0.5 + 1, status="completed", message="", best_step=done, best_cider=best)
        )
    return lines


def write_run(root: Path, name: str, lines: list[str] | None = None, **kwargs: Any) -> Path:
    """A run directory ``root/name`` with config.toml and events.jsonl (``lines`` or :func:`run_events`)."""
    run = root / name
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    cfg = RunConfig()
    prune = kwargs.get("prune")
    if prune:
        cfg.prune = dict(prune)
    (run / "config.toml").write_text(to_toml(cfg.to_dict()))
    if lines is None:
        lines = run_events(run, **kwargs)
    (run / "events.jsonl").write_text("".join(lines))
    return run
