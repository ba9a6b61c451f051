"""Progress for logs (stderr not a terminal) and from step 0 (issue 15, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsecap_cli.render import plain_progress
from sparsecap_engine.runs import RunDir
from tests.test_pruning_flow import tiny_config


def test_plain_lines_start_throttle_and_finish():
    now = [100.0]
    lines: list[str] = []
    progress = plain_progress(30.0, lines.append, clock=lambda: now[0])
    progress("train", 0, 1000)
    for step in range(1, 1001):
        now[0] += 1.0  # one step per second
        progress("train", step, 1000, loss=2.5, items_per_s=538.6, lr=0.000012)
    assert lines[0] == "train 0/1,000 (0%) elapsed 0:00:00"
    assert len(lines) == 1 + 1000 // 30 + 1  # every 30 s, and the end
    tail = "  loss=2.5  items_per_s=538.6  lr=0.000012"  # fixed notation, no padding zeros
    assert lines[1] == "train 30/1,000 (3%) elapsed 0:00:30 eta 0:16:10" + tail
    assert lines[-1] == "train 1,000/1,000 (100%) elapsed 0:16:40" + tail
    progress("eval", 5, None)
    assert lines[-1] == "eval 5 elapsed 0:00:00"  # no total: no percentage, no ETA


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparsecap_engine.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("data") / "synth", images=30, size=32)


def test_training_reports_progress_from_step_zero_and_sparsity_when_pruning(dataset: Path, tmp_path: Path):
    from sparsecap_engine.recipes.prune import run_prune

    calls: list[tuple] = []
    cfg = tiny_config(dataset, steps=4, method="gradual", sparsity=0.5)
    cfg.train.log_every = 2
    run_prune(cfg, RunDir.create(tmp_path / "g"), progress=lambda task, done, total, **info: calls.append(
        (task, done, total, info)))
    train = [c for c in calls if c[0] == "train"]
    assert train[0][:3] == ("train", 0, 4)  # the bar appears before the first step
    assert [c[1] for c in train[1:]] == [2, 4]
    assert all("sparsity" in c[3] for c in train[1:])  # prune's bar shows the current sparsity
    # validation shows its progress too: images decoded of the validation images, ending at all of them
    val = [c for c in calls if c[0] == "validate"]
    assert len(val) == 2 and all(0 < c[1] == c[2] <= cfg.train.val_images for c in val)  # at steps 3 and 4
