"""ResNet-50/101 in torchvision's layout: weights from a local file, the ``resnet`` encoder, feature extraction."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
from safetensors.torch import save_file

from sparsecap_engine.checkpoint.model_io import load_model, save_model
from sparsecap_engine.data.features import RegionFeatures
from sparsecap_engine.data.karpathy import load_karpathy
from sparsecap_engine.data.synthetic import generate_synthetic
from sparsecap_engine.errors import CheckpointError, UsageError
from sparsecap_engine.models.extract import extract_features
from sparsecap_engine.models.registry import build_model
from sparsecap_engine.models.resnet import ResNetEncoder, resnet
from sparsecap_engine.text.vocab import Vocab

WIDTH = 8  # channel width of the test nets (64 for the real ones); the names and block counts are the real ones


def test_torchvision_layout_and_sizes():
    """Parameter totals of torchvision's resnet50 / resnet101 and its state-dict names."""
    for depth, params, entries in ((50, 25_557_032, 320), (101, 44_549_160, 626)):
        net = resnet(depth)
        state = net.state_dict()
        assert sum(p.numel() for p in net.parameters()) == params and len(state) == entries
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert "layer1.0.downsample.1.running_var" in state and "layer3.22.bn3.num_batches_tracked" in state
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1) and state["fc.weight"].shape == (1000, 2048)
    with pytest.raises(UsageError):
        resnet(34)


def _weights(tmp_path: Path, depth: int = 50, suffix: str = ".safetensors", wrap: bool = False) -> tuple[Path, dict]:
    torch.manual_seed(depth)
    net = resnet(depth, width=WIDTH)
    for m in net.modules():  # non-trivial BatchNorm statistics, as in trained weights
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path / f"resnet{depth}{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}} if wrap else state, path)
    return path, state


@pytest.mark.parametrize("suffix,wrap", [(".safetensors", False), (".pth", False), (".pth", True)])
def test_weights_load_from_a_local_file(tmp_path: Path, suffix: str, wrap: bool):
    path, state = _weights(tmp_path, suffix=suffix, wrap=wrap)
    enc = ResNetEncoder(depth=50, weights=str(path), width=WIDTH)
    own = enc.net.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in own) and "fc.weight" not in own
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.net.training  # frozen BatchNorm stays in eval mode


def test_wrong_or_broken_weights_are_one_line_errors(tmp_path: Path):
    path50, _ = _weights(tmp_path, 50)
    with pytest.raises(CheckpointError, match="resnet50.safetensors.*not weights of this ResNet"):
        ResNetEncoder(depth=101, weights=str(path50), width=WIDTH)
    with pytest.raises(CheckpointError, match="shape"):
        ResNetEncoder(depth=50, weights=str(path50), width=16)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pth") as info:
        ResNetEncoder(depth=50, weights=str(bad), width=WIDTH)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="not found"):
        ResNetEncoder(depth=50, weights=str(tmp_path / "none.pth"), width=WIDTH)


class _Payload:
    """A pickled object a weights-only load must refuse, whose unpickling would leave a trace."""

    def __reduce__(self):
        return (os.system, (f"touch {MARK}",))


MARK = "/tmp/sparsecap-resnet-payload-ran"


def test_a_pickle_with_code_is_refused_without_advice_to_run_it(tmp_path: Path):
    """torch's own error advises retrying with ``weights_only=False`` — i.e. running the file's code: never repeat
    that; say what to do instead, and never run the payload."""
    Path(MARK).unlink(missing_ok=True)
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="evil.pth.*never unpickled.*safetensors") as info:
        ResNetEncoder(depth=50, weights=str(evil), width=WIDTH)
    message = str(info.value)
    assert "weights_only" not in message and "can still be loaded" not in message and "\n" not in message
    assert not Path(MARK).exists()


def test_resnet_encoder_in_a_caption_model(tmp_path: Path):
    path, _ = _weights(tmp_path)
    cfg = {"name": "ort", "encoder": "resnet", "encoder_args": {"depth": 50, "weights": str(path), "width": WIDTH},
           "d_model": 16, "dim_feedforward": 16, "num_layers": 1, "num_heads": 2}
    model = build_model(cfg, 12).eval()
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    memory = model.encode({"images": images})
    assert model.takes_pixels and memory["mask"].shape == (2, 4)  # 64 px / 32 → 2×2 grid
    logp = model(memory, torch.tensor([[2, 5, 6], [2, 7, 8]]))
    ckpt = tmp_path / "m.safetensors"
    save_model(ckpt, model, Vocab([f"w{i}" for i in range(8)]))
    path.unlink()  # the weights file is gone: the checkpoint holds the ResNet
    loaded, vocab, _ = load_model(ckpt)
    assert len(vocab) == 12
    assert torch.allclose(loaded(loaded.encode({"images": images}), torch.tensor([[2, 5, 6], [2, 7, 8]])), logp)


def test_extract_features_to_hdf5(tmp_path: Path):
    dataset = generate_synthetic(tmp_path / "syn", images=5, size=32, seed=1)
    weights, _ = _weights(tmp_path)
    seen: list[int] = []
    out, n, cells = extract_features(dataset, tmp_path / "grid.h5", weights, "resnet50", image_size=64,
                                     batch_size=2, progress=lambda task, done, total, **_: seen.append(done),
                                     width=WIDTH)
    assert (n, cells) == (5, 4) and seen[-1] == 5
    with h5py.File(out) as f:
        assert f.attrs["encoder"] == "resnet50" and f["feats/0"].shape == (4, WIDTH * 32)
    records = load_karpathy(dataset)
    store = RegionFeatures.open(out)
    assert store.check(records) == WIDTH * 32
    batch = store.batch(records[:2])
    assert torch.allclose(batch["boxes"][0, 3], torch.tensor([0.5, 0.5, 1.0, 1.0]))
    with pytest.raises(UsageError):
        extract_features(dataset, tmp_path / "x.h5", weights, "vgg16")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow
def test_cli_extract_features(tmp_path: Path):
    """Full-width ResNet-50 weights (random, fp16: a smaller file) through ``sparsecap data extract-features``."""
    dataset = generate_synthetic(tmp_path / "syn", images=3, size=32, seed=1)
    weights = tmp_path / "r50.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in resnet(50).state_dict().items()}, str(weights))
    exe = str(Path(sys.executable).parent / "sparsecap")
    out = tmp_path / "feats.h5"
    res = subprocess.run([exe, "data", "extract-features", "--encoder", "resnet50", "--weights", str(weights),
                          "--dataset", str(dataset), "--out", str(out), "--image-size", "64"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "3 images x 4 regions" in res.stdout
    with h5py.File(out) as f:
        assert f["feats/2"].shape == (4, 2048) and f["boxes/2"].shape == (4, 4)
    res = subprocess.run([exe, "data", "extract-features", "--weights", str(weights), "--dataset", str(dataset),
                          "--out", str(tmp_path / "r101.h5")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 1 and "not weights of this ResNet" in res.stderr
    assert not (tmp_path / "r101.h5").exists()
