import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sparsecap_engine.checkpoint.dense import read_file
from sparsecap_engine.checkpoint.model_io import load_model, read_state, save_model
from sparsecap_engine.checkpoint.sparse import (
    FORMAT,
    choose_storage,
    encode_state,
    encode_tensor,
    export_sparse,
    pack_bits,
    save_sparse,
    unpack_bits,
)
from sparsecap_engine.errors import CheckpointError
from tests.sparse_fixtures import pruned_ort, pruned_updown, vocab_for


def _dense_file(tmp_path: Path, model) -> Path:
    path = tmp_path / "dense.safetensors"
    save_model(path, model, vocab_for(model), step=3, metrics={"CIDEr-D": 0.25})
    return path


@pytest.mark.parametrize("make", [pruned_updown, pruned_ort])
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
def test_round_trip_fp32_is_bit_exact(tmp_path: Path, make, sparsity: float):
    model = make(sparsity)
    out = tmp_path / "sparse.safetensors"
    meta = export_sparse(_dense_file(tmp_path, model), out, "fp32")
    assert meta["format"] == FORMAT and meta["version"] == 2 and meta["values"] == "fp32"
    loaded, vocab, meta2 = load_model(out)
    assert meta2["step"] == 3 and meta2["metrics"] == {"CIDEr-D": 0.25} and len(vocab) == model.config["vocab_size"]
    assert meta2["model"] == model.config
    ref = model.state_dict()
    got = loaded.state_dict()
    assert ref.keys() == got.keys()
    for name, t in ref.items():
        assert t.dtype == got[name].dtype and torch.equal(t, got[name]), name
    assert out.stat().st_size < (tmp_path / "dense.safetensors").stat().st_size or sparsity < 0.9
    pos = [k for k in read_file(out)[0] if "pos" in k or k.endswith(".pe")]
    assert not pos  # positional tables are recomputed, never stored


def test_round_trip_fp16_within_tolerance(tmp_path: Path):
    model = pruned_ort(0.9)
    out = tmp_path / "half.safetensors"
    meta = export_sparse(_dense_file(tmp_path, model), out, "fp16")
    tensors, _ = read_file(out)
    assert all(t.dtype in (torch.float16, torch.uint8, torch.int16, torch.int32) or not t.is_floating_point()
               for t in tensors.values())
    state, _ = read_state(out)
    for name, t in model.state_dict().items():
        assert state[name].dtype == t.dtype
        assert torch.allclose(state[name], t, rtol=1e-3, atol=1e-4), name
        assert torch.equal(state[name] != 0, t != 0) or name not in meta["storage"], name
    fp32 = tmp_path / "full.safetensors"
    export_sparse(tmp_path / "dense.safetensors", fp32, "fp32")
    assert out.stat().st_size < fp32.stat().st_size


def test_storage_choice_bitmask_vs_csr_and_index_widths():
    # density 50 %: bitmask (1 bit/elem + values) beats CSR (2 B index/value)
    assert choose_storage((100, 100), 5000, 4) == "bitmask"
    # density 1 %: CSR wins
    assert choose_storage((100, 100), 100, 4) == "csr"
    # fully dense: neither pays
    assert choose_storage((10, 10), 100, 4) == "dense"

    old = ("bitmask", "csr")  # the version-1 codings (the Rice-coded gaps win both cases below: test_sparse_compact)
    w = torch.zeros(4, 1000)
    w[0, 3], w[2, 999], w[3, 0] = 1.0, -2.0, 3.0
    parts, entry = encode_tensor("w", w, torch.float32, old)
    assert entry["kind"] == "csr" and entry["nnz"] == 3
    assert parts["w::col"].dtype == torch.int16 and parts["w::crow"].dtype == torch.int16
    assert entry["bytes"] == 5 * 2 + 3 * 2 + 3 * 4

    wide = torch.zeros(2, 40000)  # column index 39999 does not fit int16
    wide[1, 39999] = 1.0
    parts, entry = encode_tensor("w", wide, torch.float32, old)
    assert entry["kind"] == "csr" and parts["w::col"].dtype == torch.int32

    half = (torch.arange(64.0).reshape(8, 8) % 2) * torch.arange(64.0).reshape(8, 8)
    parts, entry = encode_tensor("w", half, torch.float32)
    assert entry["kind"] == "bitmask" and parts["w::bits"].dtype == torch.uint8 and parts["w::bits"].numel() == 8


def test_bits_pack_unpack():
    mask = torch.rand(13, 7) > 0.5
    bits = pack_bits(mask)
    assert bits.numel() == (13 * 7 + 7) // 8
    assert torch.equal(unpack_bits(bits, 13 * 7).view(13, 7), mask)


def test_shared_tensors_stored_once(tmp_path: Path):
    w = torch.zeros(50, 40)
    w[::7, ::3] = 1.5
    state = {"a.weight": w, "b.weight": w, "bias": torch.ones(40), "count": torch.tensor(3)}
    tensors, storage, aliases = encode_state(state, "fp32", pruned=["b.weight"])
    assert aliases == {"b.weight": "a.weight"} and storage["a.weight"]["pruned"]
    assert [k for k in tensors if k.startswith("b.")] == []
    path = tmp_path / "s.safetensors"
    save_sparse(path, state, {"model": {}, "vocab": "{}"}, "fp16")
    back, meta = read_state(path)
    assert meta["aliases"] == {"b.weight": "a.weight"}
    assert torch.equal(back["a.weight"], w) and torch.equal(back["b.weight"], w)
    assert back["count"].dtype == torch.int64 and int(back["count"]) == 3  # integer buffers never cast


def test_threshold_when_no_model_at_hand():
    sparse = torch.zeros(30, 30)
    sparse[0, 0] = 1.0
    dense = torch.ones(30, 30)
    _, storage, _ = encode_state({"s": sparse, "d": dense}, "fp32", pruned=None, threshold=0.5)
    assert storage["s"]["pruned"] and storage["s"]["kind"] == "rice"
    assert not storage["d"]["pruned"] and storage["d"]["kind"] == "dense"


def _one_line(exc: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(exc.value)


def test_bad_files_give_one_line_errors(tmp_path: Path):
    model = pruned_updown(0.95)
    good = tmp_path / "good.safetensors"
    export_sparse(_dense_file(tmp_path, model), good)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors") as exc:
        load_model(truncated)
    _one_line(exc)

    tensors, meta = read_file(good)
    raw = {k: json.dumps(v) for k, v in meta.items()}
    other = tmp_path / "v2.safetensors"
    save_file(tensors, str(other), metadata={**raw, "version": "3"})
    with pytest.raises(CheckpointError, match="version") as exc:
        load_model(other)
    _one_line(exc)

    missing = tmp_path / "missing.safetensors"
    name = next(k for k in tensors if k.endswith("::values"))
    save_file({k: v for k, v in tensors.items() if k != name}, str(missing), metadata=raw)
    with pytest.raises(CheckpointError, match="lacks tensor") as exc:
        load_model(missing)
    _one_line(exc)

    corrupt = tmp_path / "corrupt.safetensors"
    bad = dict(tensors)
    col = next(k for k in tensors if k.endswith(("::col", "::bits", "::q")))
    bad[col] = bad[col][:-1].clone()
    save_file(bad, str(corrupt), metadata=raw)
    with pytest.raises(CheckpointError) as exc:
        load_model(corrupt)
    _one_line(exc)

    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="no format") as exc:
        load_model(plain)
    _one_line(exc)
