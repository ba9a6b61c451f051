"""``sparsecap monitor --once`` / ``--json`` as text, through typer's CliRunner on the ``monitor`` function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sparsecap_cli.commands.monitor import monitor
from sparsecap_engine.errors import RunError, UsageError
from tests.monitor_fixtures import T0, event, write_run

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
        "  step 400/400 (100%)  epoch 8  items/s 160  ETA —  device cpu  ckpt last.safetensors@400 ★best"
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
        runner.invoke(app, [str(tmp_path), "--json", "--once"], catch_exceptions=False)


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
