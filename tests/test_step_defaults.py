"""Defaults that follow the run length, sparsity at every log step, and the curves plot (issue 15, items 7, 8, 12)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from sparsecap_cli.commands.common import build_config
from sparsecap_engine.config import RunConfig, fit_to_steps
from sparsecap_engine.monitor_state import RunState
from sparsecap_engine.plots import curves_png
from sparsecap_engine.runs import RunDir
from tests.test_pruning_flow import tiny_config


def _cfg(steps: int) -> RunConfig:
    cfg = RunConfig()
    cfg.train.steps = steps
    return cfg


def test_short_runs_validate_log_and_warm_up_in_proportion():
    cfg = _cfg(80)
    assert fit_to_steps(cfg, set()) == []
    assert (cfg.train.val_every, cfg.train.log_every, cfg.optim.warmup) == (20, 4, 8)
    tiny = _cfg(3)
    fit_to_steps(tiny, set())
    assert (tiny.train.val_every, tiny.train.log_every, tiny.optim.warmup) == (1, 1, 0)


@pytest.mark.parametrize("steps", [1500, 1200, 3000])
def test_default_length_runs_keep_their_defaults(steps: int):
    cfg = _cfg(steps)
    fit_to_steps(cfg, set())
    assert (cfg.train.val_every, cfg.train.log_every, cfg.optim.warmup) == (500, 25, 200)


def test_given_values_are_kept_and_nonsense_is_warned():
    cfg = _cfg(80)
    cfg.train.val_every, cfg.train.log_every, cfg.optim.warmup = 100, 50, 100
    warnings = fit_to_steps(cfg, {"train.val_every", "train.log_every", "optim.warmup"})
    assert (cfg.train.val_every, cfg.train.log_every, cfg.optim.warmup) == (100, 50, 100)
    assert len(warnings) == 2
    assert "train.val_every 100 > train.steps 80" in warnings[0]
    assert "optim.warmup 100 ≥ train.steps 80" in warnings[1]
    constant = _cfg(80)
    constant.optim.schedule, constant.optim.warmup = "constant", 500
    assert fit_to_steps(constant, {"optim.warmup"}) == []  # no warm-up in a constant schedule


def test_flags_and_config_files_count_as_given(tmp_path: Path):
    assert build_config(None, {"train.steps": 80}, None).train.val_every == 20
    assert build_config(None, {"train.steps": 80, "train.val_every": 70}, None).train.val_every == 70
    assert build_config(None, {"train.steps": 80}, ["train.val_every=60"]).train.val_every == 60
    toml = tmp_path / "run.toml"
    toml.write_text("[train]\nsteps = 80\nlog_every = 40\n")
    cfg = build_config(toml, {}, None)
    assert (cfg.train.log_every, cfg.train.val_every) == (40, 20)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparsecap_engine.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("data") / "synth", images=40, size=32)


def test_pruning_runs_log_sparsity_at_every_log_step(dataset: Path, tmp_path: Path):
    from sparsecap_engine.recipes.prune import run_prune

    cfg = tiny_config(dataset, steps=12, method="gradual", sparsity=0.8)
    cfg.train.log_every, cfg.train.val_every = 1, 6
    run = RunDir.create(tmp_path / "gradual")
    assert run_prune(cfg, run).reached
    train = [e for e in run.events() if e["kind"] == "train"]
    ramp = [e["sparsity"] for e in train]
    assert len(ramp) == 12 and ramp[0] < 0.1 and abs(ramp[-1] - 0.8) < 0.01
    assert all(a <= b + 1e-9 for a, b in zip(ramp, ramp[1:], strict=False))  # gradual only adds zeros
    assert len(set(ramp)) > 3  # the ramp, not just its end

    state = RunState("gradual", run.path)
    for e in run.events():
        state.apply(e)
    curve = state.curve("sparsity")
    assert curve.steps == list(range(1, 13))  # one point per step, the validations' not repeated
    assert curve.values == pytest.approx(ramp)

    png = Image.open(io.BytesIO(curves_png(run.events(), "gradual")))
    dense_png = Image.open(io.BytesIO(curves_png([e for e in run.events() if e["kind"] != "sparsity"
                                                  and e["kind"] != "train"], "x")))
    assert png.width == 1500 and dense_png.width == 1000  # a third panel: sparsity with its target


def test_dense_runs_log_no_sparsity_and_plot_a_single_point():
    events = [{"kind": "train", "step": 1, "loss": 3.0, "lr": 1e-3}, {"kind": "val", "step": 1,
                                                                      "metrics": {"CIDEr-D": 0.1}}]
    png = Image.open(io.BytesIO(curves_png(events, "one point")))
    assert png.width == 1000
