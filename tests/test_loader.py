"""DataLoader workers reading region features ahead of the training loop (``data/loader.py``): the same batches, the
same training, whichever number of workers; HDF5 reopened in each worker."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparsecap_engine.data.loader import PrefetchedSplit, auto_workers
from sparsecap_engine.runs import RunDir
from tests.test_pruning_flow import tiny_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparsecap_engine.data.synthetic import generate_synthetic
    from sparsecap_engine.data.synthetic_features import ensure_synthetic_features

    path = generate_synthetic(tmp_path_factory.mktemp("data") / "synth", images=40, size=32)
    ensure_synthetic_features(path)
    return path


def _config(dataset: Path, workers: int):
    cfg = tiny_config(dataset, steps=6)
    cfg.data.features, cfg.data.workers = "auto", workers
    cfg.model.overrides = {"rnn_size": 32, "input_encoding_size": 16, "att_hid_size": 16}
    cfg.train.log_every = 1
    return cfg


def test_prefetched_blocks_are_the_direct_reads(dataset: Path):
    from sparsecap_engine.training.setup import load_splits, resolve_model

    cfg = _config(dataset, 2)
    train = load_splits(cfg.data, model=resolve_model(cfg.model)).train
    assert train.features is not None and train.features.feats.is_h5
    blocks = [[0, 3, 5], [7, 1], [2, 2, 9, 4]]
    data = PrefetchedSplit(train, blocks, workers=2)
    assert len(data) == len(train) and data.records is train.records  # the split's own attributes
    for block in blocks:
        got, want = data.image_batch(block), train.image_batch(block)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    odd = data.image_batch([6, 8])  # not an expected block: read directly
    assert torch.equal(odd["att_feats"], train.image_batch([6, 8])["att_feats"])
    assert (data.served, data.direct) == (3, 1)
    data.close()


def test_out_of_order_requests_fall_back_without_losing_the_queue(dataset: Path):
    from sparsecap_engine.training.setup import load_splits, resolve_model

    cfg = _config(dataset, 1)
    train = load_splits(cfg.data, model=resolve_model(cfg.model)).train
    data = PrefetchedSplit(train, [[1], [2]], workers=1)
    assert torch.equal(data.image_batch([5])["att_feats"], train.image_batch([5])["att_feats"])  # e.g. SNIP's batch
    assert torch.equal(data.image_batch([1])["att_feats"], train.image_batch([1])["att_feats"])
    assert torch.equal(data.image_batch([2])["att_feats"], train.image_batch([2])["att_feats"])
    assert (data.served, data.direct) == (2, 1)


def test_training_with_workers_equals_training_without(dataset: Path, tmp_path: Path):
    """The workers draw nothing from the global RNG: dropout and every loss are the same as without them."""
    from sparsecap_engine.recipes.train import train

    losses, weights = {}, {}
    for workers in (0, 2):
        cfg = _config(dataset, workers)
        cfg.model.overrides["drop_prob_lm"] = 0.5  # dropout on: its random stream must not move
        run = RunDir.create(tmp_path / f"w{workers}")
        res = train(cfg, run)
        assert res.status == "completed"
        losses[workers] = [e["loss"] for e in run.events() if e["kind"] == "train"]
        weights[workers] = torch.load(run.checkpoints / "last.state.pt", weights_only=True)["model"]
    assert len(losses[0]) == 6 and losses[0] == losses[2]
    assert all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_auto_workers():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert auto_workers(3, cpu, True) == 3  # as given
    assert auto_workers(-1, cpu, True) == 0  # the CPU's cores train
    assert auto_workers(-1, cuda, False) == 0  # images are in memory already
    assert 0 <= auto_workers(-1, cuda, True) <= 4
    assert auto_workers(-1, cuda, True, local_processes=1024) == 0
