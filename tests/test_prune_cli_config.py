"""``sparsecap prune`` through the real executable: the ``[prune]`` options merge (defaults < ``--config`` file <
``--set prune.*`` < explicit flags), what ``--from RUN`` inherits, and a missed target as a loud failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sparsecap_engine.config import to_toml
from sparsecap_engine.data.synthetic import generate_synthetic

EXE = str(Path(sys.executable).parent / "sparsecap")
FAST = ["--steps", "2", "--val-every", "2", "--quiet"]


def sparsecap(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FORCE_COLOR": "1"}  # colour on: the error line must be red
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dense run trained for 4 steps, and a config file that is its config plus ``[prune]`` magnitude at 0.5."""
    root = tmp_path_factory.mktemp("prune-cli")
    dataset = generate_synthetic(root / "data", images=40, size=32, seed=5)
    runs = root / "runs"
    res = sparsecap(
        "train", "--dataset", str(dataset), "--runs-root", str(runs), "--name", "dense", "--steps", "4",
        "--batch-size", "4", "--val-every", "4", "--device", "cpu", "--quiet",
        "--set", "data.image_size=32", "--set", "model.rnn_size=32", "--set", "model.input_encoding_size=16",
        "--set", "model.att_hid_size=16", "--set", "train.val_images=4",
        "--set", 'model.encoder_args={"channels": [8, 16]}',
    )
    assert res.returncode == 0, res.stderr
    data = tomllib.loads((runs / "dense" / "config.toml").read_text())
    data["prune"] = {"method": "magnitude", "sparsity": 0.5}
    config = root / "magnitude.toml"
    config.write_text(to_toml(data))
    return {"root": root, "runs": runs, "dense": runs / "dense", "config": config}


def prune_opts(run: Path) -> dict:
    return tomllib.loads((run / "config.toml").read_text())["prune"]


def table(run: Path) -> dict:
    return json.loads((run / "sparsity.json").read_text())


def run_end(run: Path) -> dict:
    return json.loads((run / "events.jsonl").read_text().splitlines()[-1])


@pytest.mark.slow
def test_config_file_prune_section_is_used(tiny: dict[str, Path]):
    runs = tiny["root"] / "runs-a"  # no --name: the default name says the resolved method and sparsity
    res = sparsecap("prune", "--config", str(tiny["config"]), "--from", str(tiny["dense"]), "--runs-root", str(runs),
                    *FAST)
    assert res.returncode == 0, res.stdout + res.stderr
    (run,) = runs.iterdir()
    assert "-magnitude-0.5-" in run.name
    assert prune_opts(run)["method"] == "magnitude" and prune_opts(run)["sparsity"] == 0.5
    assert table(run)["method"] == "magnitude" and table(run)["target"] == 0.5 and table(run)["reached"] is True
    assert table(run)["pruned"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    # a reached target: pruned checkpoint (+ masks), status completed, exit 0
    assert (run / "checkpoints" / "pruned.safetensors").is_file()
    assert (run / "checkpoints" / "pruned.masks.safetensors").is_file()
    assert run_end(run)["status"] == "completed" and run_end(run)["target_reached"] is True


@pytest.mark.slow
def test_set_overrides_file_and_flag_overrides_both(tiny: dict[str, Path]):
    data = tomllib.loads(tiny["config"].read_text())
    data["prune"]["source"] = str(tiny["dense"])  # prune.source in the file stands for --from
    config = tiny["root"] / "with-source.toml"
    config.write_text(to_toml(data))
    common = ["--config", str(config), "--runs-root", str(tiny["runs"]), *FAST]
    res = sparsecap("prune", "--name", "set", "--set", "prune.sparsity=0.6", *common)
    assert res.returncode == 0, res.stdout + res.stderr
    run = tiny["runs"] / "set"
    assert prune_opts(run)["method"] == "magnitude" and prune_opts(run)["sparsity"] == 0.6
    assert prune_opts(run)["source"] == str(tiny["dense"])
    assert table(run)["target"] == 0.6 and table(run)["pruned"]["sparsity"] == pytest.approx(0.6, abs=1e-3)

    res = sparsecap("prune", "--name", "flag", "--set", "prune.sparsity=0.6", "--sparsity", "0.7", *common)
    assert res.returncode == 0, res.stdout + res.stderr
    run = tiny["runs"] / "flag"
    assert prune_opts(run)["method"] == "magnitude" and prune_opts(run)["sparsity"] == 0.7
    assert table(run)["target"] == 0.7 and table(run)["pruned"]["sparsity"] == pytest.approx(0.7, abs=1e-3)


@pytest.mark.slow
def test_from_run_does_not_inherit_its_prune_section(tiny: dict[str, Path]):
    """``--from`` a magnitude-0.5 run without ``--config``: its data/training settings, not its pruning options."""
    res = sparsecap("prune", "--config", str(tiny["config"]), "--from", str(tiny["dense"]), "--name", "src",
                    "--runs-root", str(tiny["runs"]), *FAST)
    assert res.returncode == 0, res.stdout + res.stderr
    res = sparsecap("prune", "--from", str(tiny["runs"] / "src"), "--method", "gradual", "--name", "again",
                    "--runs-root", str(tiny["runs"]), "--steps", "4", "--val-every", "2", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    run = tiny["runs"] / "again"
    opts = prune_opts(run)
    assert opts["method"] == "gradual" and opts["sparsity"] == 0.95 and opts["source"] == str(tiny["runs"] / "src")
    cfg = tomllib.loads((run / "config.toml").read_text())
    assert cfg["data"]["image_size"] == 32 and cfg["train"]["batch_size"] == 4  # the source run's settings


@pytest.mark.slow
def test_unknown_prune_key_names_the_nearest(tiny: dict[str, Path]):
    res = sparsecap("prune", "--from", str(tiny["dense"]), "--set", "prune.sparsty=0.5", "--runs-root",
                    str(tiny["root"] / "runs-bad"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "prune.sparsty" in lines[0] and "did you mean prune.sparsity" in lines[0]
    assert not (tiny["root"] / "runs-bad").exists()


@pytest.mark.slow
def test_missed_target_fails_loudly(tiny: dict[str, Path]):
    """Magnitude at 0.9 with every layer kept ≥ 80 % dense cannot reach the target."""
    run = tiny["runs"] / "missed"
    ckpts = run / "checkpoints"
    ckpts.mkdir(parents=True)
    for stale in ("pruned.safetensors", "pruned.masks.safetensors"):  # what an earlier success left behind
        (ckpts / stale).write_bytes(b"stale")
    res = sparsecap("prune", "--config", str(tiny["config"]), "--from", str(tiny["dense"]), "--sparsity", "0.9",
                    "--criterion", "uniform", "--set", "prune.min_density=0.8", "--name", "missed", "--overwrite",
                    "--runs-root", str(tiny["runs"]), *FAST)
    assert res.returncode == 1, res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "\x1b[1;31merror:" in errors[0]  # one red line
    assert "target sparsity 90.00% missed: reached 1" in errors[0] and "NNZ" in errors[0]
    assert "90.00% missed" not in res.stdout  # said once, on stderr
    end = run_end(run)
    assert end["kind"] == "run_end" and end["status"] == "target-missed" and end["target_reached"] is False
    assert "missed" in end["message"]
    assert not (ckpts / "pruned.safetensors").exists() and not (ckpts / "pruned.masks.safetensors").exists()
    assert (ckpts / "last.safetensors").is_file() and (run / "sparsity.csv").is_file()
    assert table(run)["reached"] is False and table(run)["checkpoint"] is None and table(run)["from"] == "last"
    once = sparsecap("monitor", str(run), "--once")
    assert once.returncode == 0 and "[target-missed]" in once.stdout


@pytest.mark.slow
@pytest.mark.parametrize("steps", [12, 40])
def test_supermask_default_recipe_reaches_its_target_through_the_executable(tiny: dict[str, Path], steps: int):
    """A short real SMP run (default robust recipe) ends on target: NNZ within 5 %, status completed, exit 0."""
    run = tiny["runs"] / f"smp-{steps}"
    res = sparsecap("prune", "--config", str(tiny["config"]), "--method", "supermask", "--sparsity", "0.9",
                    "--name", run.name, "--runs-root", str(tiny["runs"]), "--steps", str(steps),
                    "--val-every", str(steps // 4), "--quiet")
    assert res.returncode == 0, res.stderr
    end = run_end(run)
    assert end["status"] == "completed" and end["target_reached"] is True
    rep = table(run)
    numel, nnz = rep["pruned"]["numel"], rep["pruned"]["nnz"]
    assert abs(nnz - 0.1 * numel) <= 0.05 * 0.1 * numel
    assert (run / "checkpoints" / "pruned.safetensors").is_file()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    sparsity = [e for e in events if e["kind"] == "sparsity"]
    assert all(e["recipe"] == "robust" for e in sparsity)
    for e in sparsity:  # the threshold keeps the scheduled sparsity at every validation (after hardening: the target)
        want = 0.9 if e["hardened_at"] is not None else e["scheduled"]
        assert abs(e["overall"] - want) <= 0.01, e


@pytest.mark.slow
def test_prune_on_region_features_then_caption_an_image(tiny: dict[str, Path]):
    """The main job's path: ``prune --features auto`` trains on the synthetic scenes' region features; the pruned
    checkpoint names those regions, so ``caption`` of a plain PNG computes them and decodes."""
    from sparsecap_engine.checkpoint.model_io import read_state
    from sparsecap_engine.data.synthetic_features import REGIONS_NAME

    dataset = tiny["root"] / "data" / "dataset.json"
    res = sparsecap("prune", "--method", "supermask", "--sparsity", "0.9", "--features", "auto",
                    "--dataset", str(dataset), "--name", "regions", "--runs-root", str(tiny["runs"]),
                    "--set", "model.rnn_size=32", "--set", "model.input_encoding_size=16",
                    "--set", "model.att_hid_size=16", "--set", "train.val_images=4", "--batch-size", "4",
                    "--steps", "8", "--val-every", "4", "--quiet")
    assert res.returncode == 0, res.stderr
    run = tiny["runs"] / "regions"
    config = tomllib.loads((run / "config.toml").read_text())
    assert config["data"]["features"] == "auto"
    _, meta = read_state(run / "checkpoints" / "pruned.safetensors")
    assert meta["regions"] == REGIONS_NAME and meta["encoder"] == "regions"
    image = next((dataset.parent / "images").glob("*.png"))
    out = subprocess.run([EXE, "caption", str(image), "--run", str(run), "--json"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["image"] == str(image)


@pytest.mark.slow
def test_prune_resume_through_the_executable(tiny: dict[str, Path]):
    """``prune --resume --name RUN`` continues a pruning run as it was configured; mixing in options, or resuming
    a pruning run with ``train``, is a one-line usage error that writes nothing."""
    runs = str(tiny["runs"])
    res = sparsecap("prune", "--config", str(tiny["config"]), "--from", str(tiny["dense"]), "--name", "resumable",
                    "--runs-root", runs, "--steps", "4", "--val-every", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    run = tiny["runs"] / "resumable"
    before = (run / "events.jsonl").read_text()
    for args in (["prune", "--resume", "--name", "resumable", "--steps", "8"],
                 ["train", "--resume", "--name", "resumable"]):
        bad = sparsecap(*args, "--runs-root", runs)
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert bad.returncode == 2 and len(lines) == 1, bad.stderr
        assert ("--steps" in lines[0]) if args[0] == "prune" else ("sparsecap prune --resume" in lines[0])
    assert (run / "events.jsonl").read_text() == before
    again = sparsecap("prune", "--resume", "--name", "resumable", "--runs-root", runs, "--quiet")
    assert again.returncode == 0, again.stderr
    ends = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["status"] for e in ends if e["kind"] == "run_end"] == ["completed", "completed"]
    assert tomllib.loads((run / "config.toml").read_text())["prune"]["method"] == "magnitude"


def test_train_resume_refuses_what_would_change_the_run(tiny: dict[str, Path]):
    """``train --resume`` used to ignore ``--steps`` (and every other flag) silently: it now refuses anything but
    how to run (``--device``, ``--set train.num_threads``) in one line naming the flags, and writes nothing."""
    runs = tiny["runs"]
    shutil.copytree(runs / "dense", runs / "dense-again")
    before = (runs / "dense-again" / "events.jsonl").read_text()
    for extra, named in ((["--steps", "8"], "--steps"), (["--set", "optim.lr=0.1"], "--set optim.lr"),
                         (["--config", str(tiny["config"])], "--config"), (["--lr", "1"], "--lr")):
        bad = sparsecap("train", "--resume", "--name", "dense-again", "--runs-root", str(runs), *extra)
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert bad.returncode == 2 and len(lines) == 1 and named in lines[0], bad.stderr
    assert (runs / "dense-again" / "events.jsonl").read_text() == before
    ok = sparsecap("train", "--resume", "--name", "dense-again", "--runs-root", str(runs), "--device", "cpu",
                   "--set", "train.num_threads=1", "--quiet")
    assert ok.returncode == 0, ok.stderr


def test_train_and_prune_json_summaries(tiny: dict[str, Path]):
    """--json: stdout is one JSON object (no table, no progress), one shape whatever the outcome."""
    res = sparsecap("prune", "--config", str(tiny["config"]), "--from", str(tiny["dense"]), "--sparsity", "0.5",
                    "--name", "pjson", "--overwrite", "--runs-root", str(tiny["runs"]), "--json", "--steps", "2",
                    "--val-every", "2")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["status"], out["method"], out["target"], out["reached"]) == ("completed", "magnitude", 0.5, True)
    assert abs(out["sparsity"] - 0.5) < 0.03 and Path(out["outputs"]["checkpoint"]).is_file()
    assert out["best_step"] == 2 and set(out["metrics"]) == {"CIDEr-D", "BLEU-4"}
    missed = sparsecap("prune", "--config", str(tiny["config"]), "--from", str(tiny["dense"]), "--sparsity", "0.9",
                       "--criterion", "uniform", "--set", "prune.min_density=0.8", "--name", "pjson-missed",
                       "--overwrite", "--runs-root", str(tiny["runs"]), "--json", "--steps", "2", "--val-every", "2")
    assert missed.returncode == 1
    out = json.loads(missed.stdout)
    assert out["status"] == "target-missed" and out["reached"] is False and "checkpoint" not in out["outputs"]
    res = sparsecap("train", "--config", str(tiny["dense"] / "config.toml"), "--name", "tjson", "--overwrite",
                    "--runs-root", str(tiny["runs"]), "--json", "--steps", "2", "--val-every", "2")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["status"], out["step"], out["best_step"]) == ("completed", 2, 2)
    assert out["run"].endswith("tjson") and set(out["metrics"]) == {"CIDEr-D", "BLEU-4"}
