"""``sparsecap monitor --once`` / ``--json`` as text, through typer's CliRunner on the ``monitor`` function."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sparsecap_cli.commands.monitor import monitor
from sparsecap_cli.tui.sweep_text import RESULTS_NOTE
from sparsecap_engine.errors import RunError, UsageError
from tests.monitor_fixtures import T0, event, write_run
from tests.sweep_fixtures import write_sweep

app = typer.Typer()
app.command()(monitor)
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_once_prints_a_plain_snapshot(tmp_path: Path) -> None:
    run = write_run(tmp_path, "gradual", prune={"method": "gradual", "sparsity": 0.9}, steps=400, done=400)
    out = invoke(str(run), "--once")
    lines = out.splitlines()
    assert lines[0] == "run gradual  [completed]"
    assert lines[1] == "  updown  ·  gradual  ·  123,456 params  ·  target sparsity 90.0%"
    assert lines[2] == (
        "  step 400/400 (100%)  epoch 8  items/s 160  elapsed 3m21s  ETA —  device cpu  ckpt last.safetensors@400 ★best"
    )
    assert lines[3] == "  best CIDEr-D 0.8 @ step 400"
    loss = next(line for line in lines if line.startswith("  loss "))
    assert "last 1.306" in loss and "(steps 10–400)" in loss
    assert any(ch in loss for ch in "▁▂▃▄▅▆▇█")
    cider = next(line for line in lines if line.startswith("  CIDEr-D "))
    assert "▁▃▆█" in cider and "max 0.8" in cider
    assert "sparsity  overall 90.0%  target 90.0%  (step 400, 9 layers)" in lines
    assert any(line.startswith("  logit.weight") and "99.0%" in line for line in lines)
    assert "samples  (step 400)" in lines
    assert "     caption: a red circle on the left" in lines
    assert "     ref:     a big blue box in the centre" in lines
    assert all(line == line.rstrip() for line in lines)


def test_once_on_a_dense_run_and_on_a_root(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "dense", steps=200, done=200)
    write_run(root, "snip", prune={"method": "snip", "sparsity": 0.95}, steps=400, done=100)
    out = invoke(str(root / "dense"), "--once")
    assert "sparsity  (no sparsity events: dense run)" in out
    table = invoke(str(root), "--once").splitlines()
    assert table[0].split() == ["run", "status", "model", "method", "target", "step", "best", "CIDEr-D"]
    assert table[1].split() == ["dense", "completed", "updown", "dense", "—", "200/200", "0.8"]
    assert table[2].split() == ["snip", "running", "updown", "snip", "95.0%", "100/400", "0.35"]


def test_json_prints_the_summarised_state(tmp_path: Path) -> None:
    run = write_run(tmp_path, "gradual", prune={"method": "gradual", "sparsity": 0.9}, steps=400, done=300)
    data = json.loads(invoke(str(run), "--json", "--points", "5"))
    assert data["status"] == "running" and data["step"] == 300 and data["total_steps"] == 400
    assert data["method"] == "gradual" and data["target_sparsity"] == 0.9 and data["model"] == "updown"
    assert data["eta_s"] == pytest.approx(50.0)
    assert data["metrics"] == {"CIDEr-D": 0.65, "BLEU-4": 0.2167}
    assert data["curves"]["loss"]["points"] == 30 and len(data["curves"]["loss"]["steps"]) == 5
    assert data["curves"]["CIDEr-D"]["steps"] == [100, 200, 300]
    assert data["sparsity"]["layers"]["logit.weight"] == pytest.approx(0.99)
    assert data["sparsity"]["history"]["steps"] == [100, 200, 300]
    assert data["samples"][0]["caption"] == "a red circle on the left"
    assert data["malformed"] == 0


def test_json_on_a_root(tmp_path: Path) -> None:
    write_run(tmp_path, "a", steps=200, done=200)
    data = json.loads(invoke(str(tmp_path), "--json"))
    assert [r["name"] for r in data["runs"]] == ["a"]
    assert data["runs"][0]["best_cider"] == 0.8 and data["runs"][0]["status"] == "completed"


def test_wrong_paths_are_one_line_run_errors(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no run or runs folder") as err:
        runner.invoke(app, [str(tmp_path / "nope"), "--once"], catch_exceptions=False)
    assert "\n" not in str(err.value)
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("x")
    with pytest.raises(RunError, match="not a run directory"):
        runner.invoke(app, [str(tmp_path / "stuff"), "--json"], catch_exceptions=False)
    with pytest.raises(UsageError):
        runner.invoke(app, [str(tmp_path), "--once", "--interval", "0"], catch_exceptions=False)


def test_once_json_is_json(tmp_path: Path) -> None:
    write_run(tmp_path, "a", steps=200, done=200)
    assert json.loads(invoke(str(tmp_path / "a"), "--once", "--json")) == json.loads(
        invoke(str(tmp_path / "a"), "--json")
    )


def test_registered_as_sparsecap_monitor() -> None:
    from sparsecap_cli.main import app as main_app

    names = [c.name for c in main_app.registered_commands]
    assert "monitor" in names


def test_diverged_loss_stays_printable(tmp_path: Path) -> None:
    run = tmp_path / "nan"
    run.mkdir()
    lines = [event("train", s, T0 + s, loss=v, lr=1e-3) for s, v in ((1, 2.0), (2, float("nan")), (3, float("inf")))]
    (run / "events.jsonl").write_text("".join(lines))
    out = invoke(str(run), "--once")
    assert "last inf" in out and "max 2" in out
    data = json.loads(invoke(str(run), "--json"))
    assert data["curves"]["loss"]["values"] == [2.0, None, None] and data["loss"] is None


def test_once_shows_sparsity_extras(tmp_path: Path) -> None:
    run = tmp_path / "smp"
    run.mkdir()
    fields = {"method": "supermask", "reached": True, "nnz": 12345, "all_params": 0.9012, "warnings": ["w"]}
    sparsity = event("sparsity", 5, T0, overall=0.93, target=0.95, layers={"a.weight": 0.9}, **fields)
    (run / "events.jsonl").write_text(sparsity)
    out = invoke(str(run), "--once")
    assert "  reached yes · nnz 12,345 · all_params 0.9012\n" in out


# ---- sweeps ----------------------------------------------------------------------------------------------------
def test_once_on_a_sweep(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, t0=time.time() - 1300)  # the running cell started 100 s ago
    lines = invoke(str(sweep), "--once").splitlines()
    assert lines[0] == "sweep paper  [running]  4/7 cells done · 1 running · 2 pending · 1 failed · 1 target-missed"
    assert lines[1] == (
        "  methods dense, supermask, gradual, snip  ·  sparsity 95%, 97.5%  ·  "
        "budget dense 600 + fine-tune 200 steps  ·  jobs 1 (local)"
    )
    cells = lines[lines.index("cells") + 1 : lines.index("cells") + 9]
    assert cells[0].split() == ["cell", "method", "target", "status", "steps", "time", "message"]
    assert cells[1].split() == ["dense", "dense", "—", "completed", "600", "5m00s"]
    assert cells[3].split() == [
        "supermask-0.975",
        "supermask",
        "97.5%",
        "target-missed",
        "800",
        "6m40s",
        "reached",
        "93.1%",
        "of",
        "target",
        "97.5%",
    ]
    assert cells[4].split()[:6] == ["gradual-0.95", "gradual", "95%", "failed", "800", "12s"]
    assert re.fullmatch(r"gradual-0\.975 +gradual +97\.5% +running +150/800 +1m4\ds", cells[5].strip())
    assert cells[6].split() == ["snip-0.95", "snip", "95%", "pending", "800", "—"]
    at = lines.index("results  (" + RESULTS_NOTE + ")")
    assert lines[at + 1].split() == [
        "method",
        "target",
        "sparsity",
        "CIDEr",
        "BLEU-4",
        "size",
        "latency",
        "wall",
        "status",
    ]
    assert lines[at + 2].split() == [
        "dense",
        "—",
        "0.00%",
        "0.679",
        "0.301",
        "3.46",
        "MB",
        "1.00×",
        "5m00s",
        "completed",
    ]
    assert lines[at + 3].split() == [
        "supermask",
        "95%",
        "95.01%",
        "0.668",
        "0.297",
        "246",
        "kB",
        "0.41×",
        "7m00s",
        "completed",
    ]
    assert lines[at + 4].split()[-1] == "target-missed" and lines[at + 5] == ""
    plot = lines[lines.index("CIDEr vs sparsity") + 1 :]
    assert plot == [
        "  dense      0.679 (all sparsities)",
        "  supermask  93.12% → 0.642 · 95.01% → 0.668",
        "  gradual    (no results yet)",
        "  snip       (no results yet)",
    ]
    assert all(line == line.rstrip() for line in lines)


def test_once_json_on_a_sweep(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, t0=time.time() - 1300)
    data = json.loads(invoke(str(sweep), "--once", "--json"))
    assert data["kind"] == "sweep" and data["format"] == "sparsecap-sweep/1" and data["name"] == "paper"
    assert data["status"] == "running" and (data["done"], data["total"]) == (4, 7)
    assert data["counts"]["running"] == 1 and data["counts"]["pending"] == 2 and data["counts"]["failed"] == 1
    cells = {c["id"]: c for c in data["cells"]}
    assert list(cells) == [
        "dense",
        "supermask-0.95",
        "supermask-0.975",
        "gradual-0.95",
        "gradual-0.975",
        "snip-0.95",
        "snip-0.975",
    ]
    assert set(cells["dense"]) == {
        "id",
        "method",
        "target",
        "run",
        "steps",
        "budget",
        "depends",
        "planned",
        "status",
        "message",
        "action",
        "started",
        "ended",
        "wall_s",
        "elapsed_s",
        "progress",
    }
    running = cells["gradual-0.975"]
    assert running["status"] == "running" and running["progress"] == {
        "step": 150,
        "total": 800,
        "run_status": "running",
    }
    assert 99 <= running["elapsed_s"] < 160
    assert cells["gradual-0.95"]["message"] == "RuntimeError: out of memory" and cells["snip-0.95"]["elapsed_s"] is None
    assert [r["cell"] for r in data["results"]] == ["dense", "supermask-0.95", "supermask-0.975"]
    assert data["results"][1]["CIDEr"] == 0.668 and data["results"][1]["latency_vs_dense"] == 0.41
    assert data["dense"]["CIDEr"] == 0.679
    assert data["plot"] == {
        "x": "sparsity",
        "y": "CIDEr",
        "dense": 0.679,
        "methods": {
            "supermask": [
                {"cell": "supermask-0.975", "sparsity": 0.9312, "cider": 0.642, "status": "target-missed"},
                {"cell": "supermask-0.95", "sparsity": 0.9501, "cider": 0.668, "status": "completed"},
            ],
            "gradual": [],
            "snip": [],
        },
    }
    assert json.loads(invoke(str(sweep), "--json"))["cells"][0] == data["cells"][0]


def test_a_folder_of_sweeps(tmp_path: Path) -> None:
    write_sweep(tmp_path, "paper", runs=False)
    table = invoke(str(tmp_path), "--once").splitlines()
    assert table[0].split()[:6] == ["sweep", "status", "cells", "done", "running", "failed"]
    assert table[1].split() == ["paper", "running", "4/7", "1", "1", "1", "supermask-0.95", "CIDEr", "0.668"]
    data = json.loads(invoke(str(tmp_path), "--json"))
    assert data["sweeps"][0]["name"] == "paper" and data["sweeps"][0]["done"] == 4


def test_sweep_through_the_executable(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, runs=False)
    exe = str(Path(sys.executable).parent / "sparsecap")
    res = subprocess.run([exe, "monitor", str(sweep), "--once", "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"]["target-missed"] == 1
    res = subprocess.run([exe, "monitor", str(sweep), "--once"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("sweep paper  [running]")
    (sweep / "plan.json").write_text(json.dumps({"format": "sparsecap-sweep/9", "cells": []}))
    res = subprocess.run([exe, "monitor", str(sweep), "--once"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "unsupported sweep format sparsecap-sweep/9" in res.stderr + res.stdout
