"""Exact resume: N steps straight equal N/2 steps, a stop (as Ctrl-C or SIGTERM would), and a resume to N — the same
weights, masks, mask logits and loss at every step, bit for bit on the CPU — for every pruning method that trains
(supermask in both recipes, gradual, SNIP, magnitude fine-tuning); a torn event line does not eat the next event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparsecap_engine.errors import UsageError
from sparsecap_engine.recipes.prune import run_prune
from sparsecap_engine.runs import EventLog, RunDir, read_events
from tests.test_pruning_flow import TINY_MODEL, tiny_config  # noqa: F401 - shared tiny setup

STEPS = 12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparsecap_engine.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("data") / "synth", images=60, size=32)


@pytest.fixture(scope="module")
def dense(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    from sparsecap_engine.recipes.train import train

    run = RunDir.create(tmp_path_factory.mktemp("runs") / "dense")
    train(tiny_config(dataset, steps=4), run)
    return run


def _config(dataset: Path, prune: dict):
    cfg = tiny_config(dataset, steps=STEPS, **prune)
    cfg.train.log_every, cfg.train.val_every = 1, 5
    return cfg


def _stop_after(n: int):
    calls = {"n": 0}

    def stop() -> str | None:
        calls["n"] += 1
        return "interrupted (test)" if calls["n"] > n else None

    return stop


def _losses(run: RunDir) -> dict[int, float]:
    out: dict[int, float] = {}
    for e in run.events():
        if e["kind"] == "train":
            assert e["step"] not in out, f"step {e['step']} logged twice"
            out[e["step"]] = e["loss"]
    return out


METHODS = {
    "supermask": {"method": "supermask", "sparsity": 0.8},
    "supermask-paper": {"method": "supermask", "sparsity": 0.8, "recipe": "paper", "mask_lr": 5.0},
    "supermask-late": {"method": "supermask", "sparsity": 0.8, "harden_at": 0.5, "ramp_end": 0.25},
    "gradual": {"method": "gradual", "sparsity": 0.8},
    "snip": {"method": "snip", "sparsity": 0.8},
    "magnitude": {"method": "magnitude", "sparsity": 0.8, "criterion": "uniform"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(METHODS))
def test_pruned_run_resumes_exactly(dataset: Path, dense: RunDir, tmp_path: Path, name: str):
    prune = dict(METHODS[name])
    if name == "magnitude":
        prune["source"] = str(dense.path)
    straight = RunDir.create(tmp_path / "straight")
    first = run_prune(_config(dataset, prune), straight)
    stopped = RunDir.create(tmp_path / "stopped")
    half = run_prune(_config(dataset, prune), stopped, stop=_stop_after(STEPS // 2 + 1))
    assert half.status == "interrupted" and half.message.startswith("interrupted (test)")
    end = [e for e in stopped.events() if e["kind"] == "run_end"][-1]
    assert end["step"] == STEPS // 2 + 1
    again = run_prune(stopped.load_config(), stopped, resume=True)
    assert (again.status, again.reached, again.sparsity) == (first.status, first.reached, first.sparsity)
    for ckpt in ("last.safetensors", "last.masks.safetensors"):
        a, b = load_file(straight.checkpoints / ckpt), load_file(stopped.checkpoints / ckpt)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), ckpt
    state_a = torch.load(straight.checkpoints / "last.state.pt", weights_only=True)
    state_b = torch.load(stopped.checkpoints / "last.state.pt", weights_only=True)
    for key, value in state_a["hooks"].get("logits", {}).items():  # supermask: the logits themselves
        assert torch.equal(value, state_b["hooks"]["logits"][key]), key
    assert _losses(straight) == _losses(stopped)


def test_lottery_and_dense_runs_refuse_the_wrong_resume(dataset: Path, dense: RunDir, tmp_path: Path):
    run = RunDir.create(tmp_path / "lottery")
    with pytest.raises(UsageError, match="lottery runs"):
        run_prune(_config(dataset, {"method": "lottery", "sparsity": 0.5, "source": str(dense.path)}), run,
                  resume=True)


def test_torn_event_line_does_not_swallow_the_next(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.write("train", 1, loss=1.0)
    log.close()
    with path.open("a") as f:
        f.write('{"kind": "train", "ti')  # killed mid-write
    log = EventLog(path)
    log.write("train", 2, loss=0.5)
    log.close()
    assert [e["step"] for e in read_events(path)] == [1, 2]
    assert json.loads(path.read_text().splitlines()[-1])["step"] == 2


def test_overwrite_clears_the_previous_run(tmp_path: Path):
    old = RunDir.create(tmp_path / "r")
    (old.checkpoints / "pruned.safetensors").write_bytes(b"stale")
    (old.path / "sparsity.csv").write_text("stale")
    with pytest.raises(Exception, match="--overwrite"):
        RunDir.create(tmp_path / "r")
    new = RunDir.create(tmp_path / "r", overwrite=True)
    assert sorted(p.name for p in new.path.iterdir()) == [".lock", "checkpoints", "plots"]
    assert list(new.checkpoints.iterdir()) == []


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # runs at unpickling time if the loader allows code


def test_crafted_pickle_in_trainer_state_is_refused_and_never_runs(tmp_path: Path):
    from sparsecap_engine.errors import CheckpointError
    from sparsecap_engine.training.state import load_trainer_state, state_path

    run = RunDir.create(tmp_path / "r")
    marker = tmp_path / "pwned"
    torch.save({"step": 3, "payload": _Evil(marker)}, state_path(run))
    with pytest.raises(CheckpointError, match="unreadable trainer state"):
        load_trainer_state(run, None, None, None, "cpu")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_scst_run_resumes_exactly(dataset: Path, dense: RunDir, tmp_path: Path, baseline: str):
    """SCST (sampled captions, CIDEr-D reward, greedy or leave-one-out baseline): N steps straight equal N/2, a stop
    and ``--resume`` to N — the same weights and the same loss, reward and baseline at every step."""
    from sparsecap_engine.recipes.scst import run_scst, scst_config

    def config():
        cfg = scst_config(tiny_config(dataset, steps=STEPS // 2 * 2), {"source": str(dense.path), "samples": 3,
                                                                        "baseline": baseline})
        cfg.train.log_every, cfg.train.val_every = 1, 5
        cfg.optim.lr = 1e-2  # large enough that a replayed or skipped update shows in the weights
        return cfg

    straight = RunDir.create(tmp_path / "straight")
    first = run_scst(config(), straight)
    stopped = RunDir.create(tmp_path / "stopped")
    half = run_scst(config(), stopped, stop=_stop_after(STEPS // 2 + 1))
    assert half.status == "interrupted"
    again = run_scst(stopped.load_config(), stopped, resume=True)
    assert again.status == first.status == "completed"
    a, b = load_file(straight.checkpoints / "last.safetensors"), load_file(stopped.checkpoints / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    init = load_file(dense.checkpoints / "best.safetensors")
    assert any(not torch.equal(a[k], init[k]) for k in a if k in init)  # SCST did change the model

    def trace(run: RunDir) -> dict[int, tuple]:
        return {e["step"]: (e["loss"], e["reward"], e["baseline"]) for e in run.events() if e["kind"] == "train"}

    assert trace(straight) == trace(stopped) and len(trace(straight)) == STEPS
