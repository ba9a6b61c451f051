"""Run configs are written with tomli-w and always read back: emoji and quotes in paths, None, nested tables."""

from __future__ import annotations

import tomllib
from pathlib import Path

from sparsecap_engine.config import RunConfig, load_toml, to_toml
from sparsecap_engine.runs import RunDir


def test_a_config_with_awkward_values_round_trips(tmp_path: Path):
    cfg = RunConfig()
    cfg.data.dataset = str(tmp_path / "d🐈 \"quoted\" \\ back\tslash" / "dataset.json")
    cfg.model.overrides = {"encoder_args": {"channels": [8, 16]}, "rnn_size": 32, "note": "a\nb"}
    cfg.prune = {"method": "magnitude", "sparsity": 0.5, "source": None, "freeze": []}
    cfg.train.keep_steps = [5, 10]
    run = RunDir.create(tmp_path / "run")
    run.save_config(cfg)
    text = run.config_path.read_text(encoding="utf-8")
    assert "🐈" in text and "null" not in text.lower() and "None" not in text
    back = load_toml(run.config_path)
    assert back.data.dataset == cfg.data.dataset
    assert back.model.overrides == cfg.model.overrides
    assert back.prune == {"method": "magnitude", "sparsity": 0.5, "freeze": []}  # None left out: the default
    assert back.to_dict() == RunConfig.from_dict(tomllib.loads(to_toml(cfg.to_dict()))).to_dict()
    assert back.train.keep_steps == [5, 10]
