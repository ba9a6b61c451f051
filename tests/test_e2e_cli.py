"""End to end through the real ``sparsecap`` executable: train → checkpoint → caption → eval, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsecap_engine.data.synthetic import generate_synthetic

EXE = str(Path(sys.executable).parent / "sparsecap")


def sparsecap(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=1200)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    dataset = generate_synthetic(root / "data", images=60, size=32, seed=3)
    res = sparsecap(
        "train", "--dataset", str(dataset), "--runs-root", str(root / "runs"), "--name", "tiny",
        "--steps", "40", "--batch-size", "8", "--val-every", "20", "--quiet",
        "--set", "data.image_size=32", "--set", "model.rnn_size=48", "--set", "model.input_encoding_size=24",
        "--set", "model.att_hid_size=24", "--set", "train.val_images=6",
        "--set", "model.encoder_args={\"channels\": [8, 16]}",
    )
    assert res.returncode == 0, res.stderr
    return {"root": root, "run": root / "runs" / "tiny", "dataset": dataset}


@pytest.mark.slow
def test_train_writes_run_directory(trained: dict[str, Path]):
    run = trained["run"]
    for name in ("config.toml", "events.jsonl", "vocab.json", "checkpoints/best.safetensors",
                 "checkpoints/last.safetensors", "checkpoints/init.safetensors", "checkpoints/last.state.pt",
                 "plots/curves.png"):
        assert (run / name).is_file(), name
    kinds = [json.loads(line)["kind"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert kinds.count("val") == 2 and "train" in kinds and "samples" in kinds and "checkpoint" in kinds


@pytest.mark.slow
def test_caption_images_of_any_size(trained: dict[str, Path], tmp_path: Path):
    from PIL import Image

    big = tmp_path / "big.jpg"
    Image.new("RGB", (333, 517), (200, 30, 30)).save(big)
    small = next((trained["dataset"].parent / "images").glob("*.png"))
    res = sparsecap("caption", str(big), str(small), "--run", str(trained["run"]), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [o["image"] for o in out] == [str(big), str(small)]
    assert all(isinstance(o["caption"], str) and o["caption"].split() for o in out)  # words, not an empty line
    ckpt = trained["run"] / "checkpoints" / "last.safetensors"
    res = sparsecap("caption", str(small), "--checkpoint", str(ckpt))
    assert res.returncode == 0 and res.stdout.strip(), res.stderr


@pytest.mark.slow
def test_eval_writes_coco_results_and_scores(trained: dict[str, Path]):
    res = sparsecap("eval", str(trained["run"]), "--split", "test", "--baseline", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for metric in ("Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert isinstance(out["scores"][metric], float), metric
    assert out["scores"]["SPICE"] is None and "SPICE" in out["unavailable"]
    assert "baseline" in out and isinstance(out["baseline"]["scores"]["CIDEr"], float)
    folder = trained["run"] / "eval" / "test-beam1"
    captions = json.loads((folder / "captions.json").read_text())
    assert len(captions) == out["images"] and {"image_id", "caption"} <= set(captions[0])
    assert json.loads((folder / "scores.json").read_text())["scores"]["CIDEr"] == out["scores"]["CIDEr"]


@pytest.mark.slow
def test_resume_continues_from_last_step(trained: dict[str, Path]):
    run = trained["run"]
    config = run / "config.toml"
    config.write_text(config.read_text().replace("steps = 40", "steps = 50"))
    res = sparsecap("train", "--resume", "--name", "tiny", "--runs-root", str(run.parent), "--quiet")
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    train_steps = [e["step"] for e in events if e["kind"] == "train"]
    assert train_steps[-1] == 50 and train_steps == sorted(train_steps)


def one_line_error(res: subprocess.CompletedProcess, code: int | None = None) -> str:
    assert res.returncode != 0
    if code is not None:
        assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_bad_input_gives_one_line_errors(tmp_path: Path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"garbage" * 20)
    assert "not found" in one_line_error(sparsecap("caption", str(tmp_path / "nope.png"), "--checkpoint", str(junk)))
    assert "junk.safetensors" in one_line_error(sparsecap("caption", str(not_image), "--checkpoint", str(junk)))
    assert "run not found" in one_line_error(sparsecap("caption", str(not_image), "--run", str(tmp_path / "x")))
    assert "run not found" in one_line_error(sparsecap("eval", str(tmp_path / "nowhere")))
    msg = one_line_error(sparsecap("train", "--schedule", "sideways", "--runs-root", str(tmp_path)), code=2)
    assert "sideways" in msg
    msg = one_line_error(sparsecap("train", "--model", "nope", "--runs-root", str(tmp_path)), code=2)
    assert "unknown model" in msg
    res = sparsecap("--debug", "eval", str(tmp_path / "nowhere"))
    assert res.returncode != 0 and "Traceback" in res.stderr
    for value, traceback in (("1", True), ("0", False), ("", False)):  # scripts: SPARSECAP_DEBUG=1 for every command
        res = sparsecap("eval", str(tmp_path / "nowhere"), env={**os.environ, "SPARSECAP_DEBUG": value})
        assert res.returncode != 0 and ("Traceback" in res.stderr) == traceback, value


@pytest.mark.slow
def test_missing_image_and_java(trained: dict[str, Path], tmp_path: Path):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    msg = one_line_error(sparsecap("caption", str(not_image), "--run", str(trained["run"])))
    assert "not an image" in msg and "notes.jpg" in msg
    env = {k: v for k, v in os.environ.items()}
    env["PATH"] = str(Path(sys.executable).parent)  # sparsecap on PATH, java not
    msg = one_line_error(sparsecap("eval", str(trained["run"]), "--limit", "2", env=env))
    assert "Java" in msg and "sparsecap doctor" in msg


@pytest.mark.parametrize("args, needle", [
    (["--set", "train.steps=abc"], "train.steps must be an integer, got 'abc'"),
    (["--set", "train.stepz=3"], "unknown key(s) stepz (did you mean steps?)"),
    (["--set", "optim.label_smoothing=2"], "optim.label_smoothing must be in [0, 1)"),
    (["--set", "model.rnn_size=0"], "model.rnn_size must be at least 1"),
    (["--lr", "nan"], "optim.lr must be a finite number"),
    (["--grad-clip", "-1"], "optim.grad_clip must be ≥ 0"),
    (["--seed", "99999999999999999999"], "train.seed must be an integer of a sensible size"),
    (["--name", "../escape"], "a run name is one folder name"),
    (["--name", "/tmp/abs"], "a run name is one folder name"),
])
def test_bad_config_values_are_usage_errors_that_write_nothing(tmp_path: Path, args: list[str], needle: str):
    runs = tmp_path / "runs"
    res = sparsecap("train", "--runs-root", str(runs), "--steps", "1", *args, cwd=tmp_path)
    assert needle in one_line_error(res, code=2)
    assert not runs.exists() and list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


@pytest.mark.slow
def test_monitor_reads_a_run_the_recipe_wrote(trained: dict[str, Path]):
    """``monitor --once --json`` on a real run directory (not a hand-written log) reports what its events say."""
    run = trained["run"]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    res = sparsecap("monitor", str(run), "--once", "--json")
    assert res.returncode == 0, res.stderr
    state = json.loads(res.stdout)
    end = [e for e in events if e["kind"] == "run_end"][-1]
    vals = [e for e in events if e["kind"] == "val"]
    trains = [e for e in events if e["kind"] == "train"]
    assert state["status"] == end["status"] == "completed" and state["step"] == end["step"]  # 40, or 50 if resumed
    assert state["total_steps"] == events[0]["config"]["train"]["steps"]
    assert state["metrics"] == vals[-1]["metrics"] and state["best_step"] == end["best_step"]
    assert state["loss"] == trains[-1]["loss"] and state["curves"]["loss"]["steps"] == [e["step"] for e in trains]
    assert state["params"] == events[0]["params"] and state["model"] == "updown"


@pytest.mark.parametrize("args, needle", [
    (["train", "--dataset", "nope.json"], "--dataset nope.json: no such file"),
    (["prune", "--method", "supermask", "--sparsity", "0.9", "--dataset", "nope.json"], "--dataset nope.json"),
    (["prune", "--method", "supermask", "--sparsity", "0.9", "--ramp-end", "0.9", "--harden-at", "0.5"], "ramp"),
])
def test_a_failed_start_leaves_no_run_behind(tmp_path: Path, args: list[str], needle: str):
    res = sparsecap(*args, "--runs-root", str(tmp_path / "runs"), "--name", "typo", cwd=tmp_path)
    assert needle in one_line_error(res)
    assert not (tmp_path / "runs").exists()
