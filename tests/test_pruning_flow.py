"""The pruning flow through the training recipe on a tiny synthetic dataset: outputs, lottery rewinding, errors,
and one end-to-end ``sparsecap prune`` through the CLI."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sparsecap_engine.checkpoint.model_io import load_model, read_state
from sparsecap_engine.checkpoint.pruned import load_masks, masks_path
from sparsecap_engine.config import RunConfig
from sparsecap_engine.errors import CheckpointError, RunError, UsageError
from sparsecap_engine.pruning.criteria import n_keep
from sparsecap_engine.recipes.prune import PruneOptions, run_prune
from sparsecap_engine.runs import RunDir

TINY_MODEL = {"rnn_size": 32, "input_encoding_size": 16, "att_hid_size": 16, "encoder_args": {"channels": [8, 16]}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparsecap_engine.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("data") / "synth", images=60, size=32)


def tiny_config(dataset: Path, steps: int = 6, **prune) -> RunConfig:
    cfg = RunConfig()
    cfg.data.dataset, cfg.data.image_size = str(dataset), 32
    cfg.model.overrides = dict(TINY_MODEL)
    cfg.train.steps, cfg.train.batch_size, cfg.train.val_every, cfg.train.val_images = steps, 4, 3, 4
    cfg.train.device, cfg.train.log_every = "cpu", 3
    cfg.prune = prune
    return cfg


@pytest.fixture(scope="module")
def dense(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    from sparsecap_engine.recipes.train import train

    cfg = tiny_config(dataset, steps=6)
    cfg.train.keep_steps = [2]
    run = RunDir.create(tmp_path_factory.mktemp("runs") / "dense")
    train(cfg, run)
    return run


def prune_run(dataset: Path, tmp_path: Path, name: str, **prune):
    run = RunDir.create(tmp_path / name)
    return run, run_prune(tiny_config(dataset, **prune), run)


def test_magnitude_outputs_and_checkpoints(dataset: Path, dense: RunDir, tmp_path: Path):
    run, res = prune_run(dataset, tmp_path, "mag", method="magnitude", criterion="uniform", sparsity=0.8,
                         source=str(dense.path))
    assert res.reached and res.status == "completed"
    for t in res.report["tensors"].values():
        assert t["nnz"] == n_keep(t["numel"], 0.8)  # one-shot: exact per layer
    for name in ("best", "last", "pruned"):
        path = run.checkpoints / f"{name}.safetensors"
        model, _, meta = load_model(path)  # plain model class, masks baked in
        masks, _ = load_masks(masks_path(path))
        params = dict(model.named_parameters())
        assert all(torch.equal(params[n] != 0, m) for n, m in masks.items())
        assert meta["sparsity"]["target"] == 0.8
    assert (run.path / "sparsity.csv").read_text().startswith("name,shape,numel,nnz,sparsity")
    table = json.loads((run.path / "sparsity.json").read_text())
    assert table["reached"] and table["tensors"]["decoder.logit.weight"]["pruned"]
    assert (run.plots / "sparsity.png").read_bytes()[:4] == b"\x89PNG"
    events = [json.loads(line) for line in run.events_path.read_text().splitlines()]
    sparsity = [e for e in events if e["kind"] == "sparsity"]
    vals = [e for e in events if e["kind"] == "val"]
    assert len(sparsity) == len(vals) >= 2 and "layers" in sparsity[0] and sparsity[0]["target"] == 0.8
    end = events[-1]
    assert end["kind"] == "run_end" and end["target_reached"] and "reached" in end["message"]
    assert RunDir.open(run.path).load_config().prune["method"] == "magnitude"


def test_lottery_rewinds_bit_for_bit_and_iterates(dataset: Path, dense: RunDir, tmp_path: Path):
    run, res = prune_run(dataset, tmp_path, "lot", method="lottery", sparsity=0.9, rounds=2, rewind_step=2,
                         source=str(dense.path))
    assert res.reached
    rewind, _ = read_state(dense.checkpoints / "step-2.safetensors")
    for r_run, s_r in ((RunDir(run.path / "rounds" / "round-1"), 1 - 0.1**0.5), (run, 0.9)):
        init, _ = read_state(r_run.checkpoints / "init.safetensors")
        masks, _ = load_masks(masks_path(r_run.checkpoints / "init.safetensors"))
        total = sum(m.numel() for m in masks.values())
        assert sum(int(m.sum()) for m in masks.values()) == n_keep(total, s_r)
        for name, value in init.items():
            expected = rewind[name] * masks[name] if name in masks else rewind[name]
            assert torch.equal(value, expected), name  # rewound weights are the saved ones, bit for bit
    first, _ = load_masks(masks_path(run.path / "rounds" / "round-1" / "checkpoints" / "init.safetensors"))
    final, _ = load_masks(masks_path(run.checkpoints / "init.safetensors"))
    assert all(not bool((final[n] & ~first[n]).any()) for n in final)  # round 2 prunes within round 1's mask


def test_fixed_keeps_masks_and_lottery_from_gradual(dataset: Path, dense: RunDir, tmp_path: Path):
    grad_run, grad = prune_run(dataset, tmp_path, "grad", method="gradual", criterion="dist", sparsity=0.9)
    assert grad.reached and grad.sparsity == pytest.approx(0.9, abs=1e-4)
    source, _ = load_masks(masks_path(grad_run.checkpoints / "best.safetensors"))
    for method in ("fixed", "lottery"):
        run, res = prune_run(dataset, tmp_path, method, method=method, source=str(grad_run.path))
        masks, _ = load_masks(masks_path(run.checkpoints / "pruned.safetensors"))
        assert all(torch.equal(masks[n], source[n]) for n in source), method
        assert res.reached and res.target == pytest.approx(grad.sparsity)
    init, _ = read_state(RunDir(tmp_path / "lottery").checkpoints / "init.safetensors")
    gradual_init, _ = read_state(grad_run.checkpoints / "init.safetensors")
    assert all(torch.equal(init[n], gradual_init[n] * source[n]) for n in source)


def test_missed_target_is_a_failure_without_pruned_checkpoint(dataset: Path, tmp_path: Path):
    """Gradual pruning whose schedule starts after the run's end never prunes: status target-missed, no pruned
    checkpoint (a stale one from an earlier run in the same directory is removed), last kept, reached false."""
    run = RunDir.create(tmp_path / "miss")
    for stale in ("pruned.safetensors", "pruned.masks.safetensors"):
        (run.checkpoints / stale).write_bytes(b"stale")
    res = run_prune(tiny_config(dataset, method="gradual", sparsity=0.9, start=100, end=100), run)
    assert res.status == "target-missed" and not res.reached and res.sparsity == 0.0
    assert res.message.startswith("target sparsity 90.00% missed: reached 0.00% (NNZ ")
    assert "checkpoint" not in res.outputs and any("no pruned checkpoint" in n for n in res.notes)
    assert not (run.checkpoints / "best.safetensors").exists()
    assert not (run.checkpoints / "pruned.safetensors").exists()
    assert not (run.checkpoints / "pruned.masks.safetensors").exists()
    assert (run.checkpoints / "last.safetensors").is_file() and (run.path / "sparsity.csv").is_file()
    table = json.loads((run.path / "sparsity.json").read_text())
    assert table["reached"] is False and table["checkpoint"] is None and table["from"] == "last"
    end = json.loads(run.events_path.read_text().splitlines()[-1])
    assert end["status"] == "target-missed" and end["target_reached"] is False and end["message"] == res.message


def test_stopped_run_keeps_its_status(dataset: Path, tmp_path: Path):
    run = RunDir.create(tmp_path / "stop")
    res = run_prune(tiny_config(dataset, method="gradual", sparsity=0.9), run, stop=lambda: True)
    assert res.status == "stopped" and not res.reached and "missed" in res.message
    assert not (run.checkpoints / "pruned.safetensors").exists()
    end = json.loads(run.events_path.read_text().splitlines()[-1])
    assert end["status"] == "stopped" and end["target_reached"] is False


def test_target_check_reads_the_final_report():
    from sparsecap_engine.recipes.train import target_check

    assert target_check(None, 3) is None and target_check({"overall": 0.5}, 3) is None
    body = {"target": 0.9, "overall": 0.9, "nnz": 100, "numel": 1000}
    assert target_check(body, 6) == (True, "target sparsity 90.00% reached: final 90.00% (NNZ 100, target 100 ± 5 %), "
                                           "best at step 6")
    reached, msg = target_check(body, None)  # within the rule at the end but no best kept: no deliverable
    assert not reached and "no best checkpoint" in msg
    assert target_check({**body, "overall": 0.8, "nnz": 200}, 6) == (
        False, "target sparsity 90.00% missed: reached 80.00% (NNZ 200 vs target ≤ 105)")
    assert target_check({**body, "overall": 0.99, "nnz": 10}, 6) == (
        False, "target sparsity 90.00% missed: reached 99.00% (NNZ 10 vs target ≥ 95)")


def test_snip_end_to_end_exact(dataset: Path, tmp_path: Path):
    _, res = prune_run(dataset, tmp_path, "snip", method="snip", sparsity=0.7, snip_batches=2)
    assert res.report["pruned"]["nnz"] == n_keep(res.report["pruned"]["numel"], 0.7)


def test_errors(dataset: Path, dense: RunDir, tmp_path: Path):
    with pytest.raises(UsageError, match="unknown pruning method"):
        PruneOptions.from_dict({"method": "obs"})
    with pytest.raises(UsageError, match="--from"):
        PruneOptions.from_dict({"method": "magnitude"})
    with pytest.raises(UsageError, match="rounds"):
        PruneOptions.from_dict({"method": "gradual", "rounds": 3})
    with pytest.raises(RunError, match="no such run"):
        prune_run(dataset, tmp_path, "e1", method="fixed", source=str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="run directory"):
        prune_run(dataset, tmp_path, "e2", method="lottery", source=str(_lone_checkpoint(dense, tmp_path)))
    with pytest.raises(CheckpointError, match="keep_steps"):
        prune_run(dataset, tmp_path, "e3", method="lottery", source=str(dense.path), rewind_step=5)
    no_init = tmp_path / "no-init"
    (no_init / "checkpoints").mkdir(parents=True)
    for f in ("config.toml",):
        (no_init / f).write_bytes((dense.path / f).read_bytes())
    (no_init / "checkpoints" / "best.safetensors").write_bytes((dense.checkpoints / "best.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="no init checkpoint"):
        prune_run(dataset, tmp_path, "e4", method="lottery", source=str(no_init))


def _lone_checkpoint(dense: RunDir, tmp_path: Path) -> Path:
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes((dense.checkpoints / "best.safetensors").read_bytes())
    return lone


@pytest.mark.slow
def test_cli_prune_end_to_end(dataset: Path, tmp_path: Path):
    from sparsecap_cli.main import app

    runner = CliRunner()
    sets = ["--set", "data.image_size=32", "--set", "train.val_images=4", "--set", "model.rnn_size=32",
            "--set", "model.input_encoding_size=16", "--set", "model.att_hid_size=16",
            "--set", 'model.encoder_args={"channels": [8, 16]}']
    common = ["--runs-root", str(tmp_path), "--dataset", str(dataset), "--batch-size", "4", "--device", "cpu", "-q"]
    res = runner.invoke(app, ["train", "--name", "dense", "--steps", "12", "--val-every", "6", *common, *sets])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["prune", "--method", "gradual", "--criterion", "uniform", "--sparsity", "0.9",
                              "--from", str(tmp_path / "dense"), "--name", "g", "--steps", "18", "--val-every", "6",
                              "--prune-start", "2", "--prune-end", "14", "--prune-every", "3", *common])
    assert res.exit_code == 0, res.output
    assert "reached" in res.output and "pruned tensors" in res.output
    run = RunDir.open(tmp_path / "g")
    model, _, meta = load_model(run.checkpoints / "pruned.safetensors")
    assert meta["sparsity"]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert {p.name for p in (run.path, run.plots) for p in p.iterdir()} >= {"sparsity.csv", "sparsity.json",
                                                                           "sparsity.png"}
    bad = runner.invoke(app, ["prune", "--method", "lottery", *common])
    assert bad.exit_code != 0 and isinstance(bad.exception, UsageError) and "--from" in str(bad.exception)
    bad = runner.invoke(app, ["prune", "--method", "lottery", "--from", str(tmp_path / "dense"), "--rewind-step", "99",
                              "--name", "no-step", *common])
    assert isinstance(bad.exception, CheckpointError) and not (tmp_path / "no-step").exists()  # checked up front
