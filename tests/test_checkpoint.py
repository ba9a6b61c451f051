import json
import os
from pathlib import Path

import pytest
import torch

from sparsecap_engine import atomic
from sparsecap_engine.atomic import atomic_write_bytes
from sparsecap_engine.checkpoint.model_io import load_model, save_model
from sparsecap_engine.errors import CheckpointError
from sparsecap_engine.text.vocab import Vocab
from tests.test_models_updown import tiny


def test_round_trip_exact(tmp_path: Path):
    model = tiny().eval()
    vocab = Vocab([f"w{i}" for i in range(16)])
    save_model(tmp_path / "m.safetensors", model, vocab, step=7, metrics={"CIDEr-D": 0.5})
    loaded, v2, meta = load_model(tmp_path / "m.safetensors")
    assert v2 == vocab and meta["step"] == 7 and meta["metrics"]["CIDEr-D"] == 0.5
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    images = torch.rand(2, 3, 32, 32)
    tokens = torch.randint(0, 20, (2, 5))
    a = model(model.encode({"images": images}), tokens)
    assert torch.equal(a, loaded(loaded.encode({"images": images}), tokens))


@pytest.mark.parametrize("half", [False, True])
def test_inference_load_takes_the_decoded_tensors_without_a_copy(tmp_path: Path, half: bool):
    """``load_model(inference=True)`` (what captioning uses) makes the decoded tensors the parameters (no second copy)
    and gives the model a normal load gives, in its own dtype even from a half-precision file."""
    from sparsecap_engine.checkpoint import model_io

    model = tiny().eval()
    vocab = Vocab([f"w{i}" for i in range(16)])
    state = {k: v.half() if half and v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_model(tmp_path / "m.safetensors", model, vocab, state=state)
    plain, _, _ = load_model(tmp_path / "m.safetensors")
    decoded = {}
    read = model_io.read_state

    def spy(path, finite=True):
        out = read(path, finite)
        decoded.update(out[0])
        return out

    model_io.read_state = spy
    try:
        fast, _, _ = load_model(tmp_path / "m.safetensors", inference=True)
    finally:
        model_io.read_state = read
    for (n, a), (m, b) in zip(plain.state_dict().items(), fast.state_dict().items(), strict=True):
        assert n == m and a.dtype == b.dtype and torch.equal(a, b), n
        assert a.dtype == torch.float32 or not a.is_floating_point()
    if not half:  # the file's own tensors became the parameters
        assert all(p.data_ptr() == decoded[n].data_ptr() for n, p in fast.named_parameters())
    images, tokens = torch.rand(2, 3, 32, 32), torch.randint(0, 20, (2, 5))
    assert torch.equal(plain(plain.encode({"images": images}), tokens), fast(fast.encode({"images": images}), tokens))


def test_file_is_plain_safetensors(tmp_path: Path):
    from safetensors import safe_open

    save_model(tmp_path / "m.safetensors", tiny(), Vocab(["a"]))
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        assert f.metadata()["format"] == '"sparsecap-dense-1"'
        assert any(k.startswith("decoder.logit") for k in f.keys())


def test_bad_checkpoints(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_model(junk)


def test_interrupted_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "ckpt.bin"
    atomic_write_bytes(target, b"old contents")

    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new contents that never land")
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]  # no temp file left behind
    monkeypatch.setattr(atomic.os, "fsync", os.fsync)


def test_every_atomic_writer_gives_the_mode_open_would(tmp_path: Path):
    """One atomic-write helper for checkpoints, text and HDF5 feature files; none leaves a file at mkstemp's 0600."""
    import stat

    from sparsecap_engine.data.features import write_h5_atomic

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        write_h5_atomic(tmp_path / "f.h5", lambda f: f.create_dataset("x", data=[1, 2]))
        (tmp_path / "plain").write_bytes(b"x")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"a.bin": 0o644, "f.h5": 0o644, "plain": 0o644}

    def broken(f) -> None:
        raise ValueError("bad feature")

    with pytest.raises(ValueError, match="bad feature"):
        write_h5_atomic(tmp_path / "f.h5", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "f.h5", "plain"]  # old file kept, no temp file


def test_absurd_or_mismatched_metadata_is_refused_before_allocation(tmp_path: Path):
    """Metadata asking for a huge model is compared on the meta device with the file's tensors: a one-line
    CheckpointError, never an allocation of the size it asks for (one probe used to allocate 23 GB)."""
    from safetensors.torch import load_file, save_file

    from sparsecap_engine.checkpoint.model_io import read_state

    model, vocab = tiny(), Vocab([f"w{i}" for i in range(16)])
    path = tmp_path / "m.safetensors"
    save_model(path, model, vocab)
    _, meta = read_state(path)
    tensors = load_file(path)
    for bad_model, needle in (({**meta["model"], "rnn_size": 10**7}, "has shape"),
                              ({**meta["model"], "rnn_size": "wide"}, "does not describe a model")):
        bad = tmp_path / "bad.safetensors"
        save_file(tensors, bad, metadata={**_raw_meta(path), "model": json.dumps(bad_model)})
        with pytest.raises(CheckpointError, match=needle):
            load_model(bad)


def _raw_meta(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return dict(f.metadata())


def test_every_command_resolves_run_or_file_the_same_way(tmp_path: Path):
    """``checkpoint_file``: a file as given; a run's pruned checkpoint, else best, else last (``auto``); or the one
    named (best, last, pruned, step-K)."""
    from sparsecap_engine.checkpoint.source import checkpoint_file
    from sparsecap_engine.config import RunConfig
    from sparsecap_engine.errors import RunError
    from sparsecap_engine.runs import RunDir

    run = RunDir.create(tmp_path / "r")
    run.save_config(RunConfig())
    ck = run.checkpoints
    with pytest.raises(RunError, match="no best checkpoint"):
        checkpoint_file(run.path)
    (ck / "last.safetensors").write_bytes(b"")
    assert checkpoint_file(run.path) == ck / "last.safetensors"  # best falls back to last
    (ck / "best.safetensors").write_bytes(b"")
    (ck / "step-5.safetensors").write_bytes(b"")
    assert checkpoint_file(run.path) == checkpoint_file(run.path, "best") == ck / "best.safetensors"
    (ck / "pruned.safetensors").write_bytes(b"")
    assert checkpoint_file(run.path) == ck / "pruned.safetensors"
    assert checkpoint_file(run.path, "last") == ck / "last.safetensors"
    assert checkpoint_file(run.path, "step-5") == ck / "step-5.safetensors"
    assert checkpoint_file(tmp_path / "x.safetensors") == tmp_path / "x.safetensors"
    with pytest.raises(RunError, match="no step-7 checkpoint"):
        checkpoint_file(run.path, "step-7")
