"""Hand-written sweep folders (format ``sparsecap-sweep/1``, /tmp/spec/sweep_format.md) for the sweep monitor tests.

``write_sweep`` lays out a sweep caught halfway through: plan.json, events.jsonl, results.json and a run directory
for each cell that started. The numbers are fixed so the tests can name them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sparsecap_engine.config import RunConfig
from tests.monitor_fixtures import T0, write_run

METHODS = ["dense", "supermask", "gradual", "snip"]
SPARSITY = [0.95, 0.975]
DENSE_STEPS, FINETUNE_STEPS = 600, 200
BUDGET = {"dense": DENSE_STEPS, "finetune": FINETUNE_STEPS, "prune_train": 800, "lottery_retrain": 800}


def cell_id(method: str, sparsity: float) -> str:
    return "dense" if method == "dense" else f"{method}-{sparsity:g}"


def plan(name: str = "paper", methods: list[str] = METHODS, sparsity: list[float] = SPARSITY) -> dict[str, Any]:
    """plan.json: the dense cell, then method × sparsity in order."""
    base = RunConfig().to_dict()
    cells = []
    for method in methods:
        for s in [0.0] if method == "dense" else sparsity:
            cid = cell_id(method, s)
            steps = DENSE_STEPS if method == "dense" else DENSE_STEPS + FINETUNE_STEPS
            budget = "dense 600" if method == "dense" else "dense 600 + fine-tune 200"
            argv = (
                ["sparsecap", "train", "--name", cid]
                if method == "dense"
                else ["sparsecap", "prune", "--method", method, "--sparsity", f"{s:g}", "--name", cid]
            )
            config = {**base, "prune": {} if method == "dense" else {"method": method, "sparsity": s}}
            cells.append(
                {
                    "id": cid,
                    "method": method,
                    "sparsity": s,
                    "run": cid,
                    "steps": steps,
                    "budget": budget,
                    "depends": [] if method in ("dense", "supermask", "gradual", "snip") else ["dense"],
                    "argv": argv,
                    "config": config,
                }
            )
    return {
        "format": "sparsecap-sweep/1",
        "name": name,
        "created": T0,
        "methods": methods,
        "sparsity": sparsity,
        "budget": BUDGET,
        "base_config": base,
        "cells": cells,
    }


def sweep_event(kind: str, t: float, **fields: Any) -> str:
    return json.dumps({"kind": kind, "time": t, "step": 0, **fields}) + "\n"


def row(
    cell: str,
    method: str,
    target: float,
    cider: float | None,
    sparsity: float,
    status: str = "completed",
    bleu4: float | None = None,
    size: int | None = None,
    latency: float | None = None,
    wall: float = 300.0,
) -> dict[str, Any]:
    numel = 1_000_000
    return {
        "cell": cell,
        "method": method,
        "target": target,
        "status": status,
        "sparsity": sparsity,
        "nnz": round(numel * (1 - sparsity)),
        "numel": numel,
        "steps": DENSE_STEPS if method == "dense" else DENSE_STEPS + FINETUNE_STEPS,
        "budget": "dense 600" if method == "dense" else "dense 600 + fine-tune 200",
        "CIDEr": cider,
        "Bleu_4": bleu4,
        "METEOR": None if cider is None else round(cider / 3, 4),
        "ROUGE_L": None if cider is None else round(0.3 + cider / 4, 4),
        "size_bytes": size,
        "latency_ms": latency,
        "latency_vs_dense": None if latency is None else round(latency / 10.0, 4),
        "wall_s": wall,
    }


DENSE_ROW = row("dense", "dense", 0.0, 0.679, 0.0, bleu4=0.301, size=3_456_789, latency=10.0, wall=300.0)
SMP_95_ROW = row("supermask-0.95", "supermask", 0.95, 0.668, 0.9501, bleu4=0.297, size=245_678, latency=4.1, wall=420)
SMP_975_ROW = row(
    "supermask-0.975", "supermask", 0.975, 0.642, 0.9312, "target-missed", 0.28, size=301_234, latency=4.6, wall=400
)
GRADUAL_95_ROW = row("gradual-0.95", "gradual", 0.95, 0.601, 0.95, bleu4=0.262, size=244_000, latency=4.0, wall=410)


def write_results(sweep: Path, rows: list[dict[str, Any]], dense: dict[str, Any] | None, t: float) -> None:
    """results.json, rewritten atomically as the sweep does after every cell."""
    tmp = sweep / ".results.json.tmp"
    tmp.write_text(json.dumps({"cells": rows, "dense": dense, "updated": t}, indent=2))
    os.replace(tmp, sweep / "results.json")


def append(sweep: Path, *lines: str) -> None:
    with (sweep / "events.jsonl").open("a") as f:
        f.write("".join(lines))


def write_sweep(root: Path, name: str = "paper", t0: float = T0, runs: bool = True) -> Path:
    """A sweep halfway through (times from ``t0``):

    ========================  =============  ==============================================
    dense                     completed      wall 300 s
    supermask-0.95            completed      wall 420 s
    supermask-0.975           target-missed  reached 93.1 % of 97.5 %
    gradual-0.95              failed         "out of memory" (no results row)
    gradual-0.975             running        started at t0 + 1200, its run at step 150/800
    snip-0.95, snip-0.975     pending
    ========================  =============  ==============================================

    results.json holds dense, supermask-0.95 and supermask-0.975. With ``runs`` each started cell gets a run dir.
    """
    sweep = root / name
    sweep.mkdir(parents=True)
    (sweep / "plan.json").write_text(json.dumps(plan(name), indent=2))
    t = t0
    lines = [sweep_event("sweep_start", t, cells=7, jobs=1, launcher="local")]
    for cid, status, message, wall in (
        ("dense", "completed", "", 300.0),
        ("supermask-0.95", "completed", "", 420.0),
        ("supermask-0.975", "target-missed", "reached 93.1% of target 97.5%", 400.0),
        ("gradual-0.95", "failed", "RuntimeError: out of memory", 12.0),
    ):
        lines.append(sweep_event("cell_start", t, cell=cid))
        t += wall
        lines.append(sweep_event("cell_end", t, cell=cid, status=status, message=message, wall_s=wall))
    lines.append(sweep_event("cell_start", t0 + 1200, cell="gradual-0.975"))
    (sweep / "events.jsonl").write_text("".join(lines))
    write_results(sweep, [DENSE_ROW, SMP_95_ROW, SMP_975_ROW], DENSE_ROW, t)
    if runs:
        write_run(sweep, "dense", steps=DENSE_STEPS, done=DENSE_STEPS)
        for cid, method, s in (("supermask-0.95", "supermask", 0.95), ("supermask-0.975", "supermask", 0.975)):
            write_run(sweep, cid, prune={"method": method, "sparsity": s}, steps=800, done=800)
        for cid, s, done in (("gradual-0.95", 0.95, 30), ("gradual-0.975", 0.975, 150)):
            prune = {"method": "gradual", "sparsity": s}
            write_run(sweep, cid, prune=prune, steps=800, done=done, finished=False)
    return sweep
