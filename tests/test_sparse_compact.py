"""Compact sparse checkpoints, version 2 (issue 16, item 4): Rice-coded gaps as a third index coding chosen per tensor,
int8 values with per-row scales, version-1 files still loading, and ``export --values int8 --check``."""

from __future__ import annotations

import base64
import json
import math
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sparsecap_engine.checkpoint.dense import read_file
from sparsecap_engine.checkpoint.model_io import load_model, read_state, save_model
from sparsecap_engine.checkpoint.sparse import (
    SPARSE_KINDS,
    VERSION,
    decode_tensor,
    encode_state,
    encode_tensor,
    export_sparse,
    gaps_of,
    pack_sparse,
    quantize_int8,
    rice_bytes,
    rice_decode,
    rice_encode,
    rice_parameter,
    save_sparse,
    scale_rows,
)
from sparsecap_engine.errors import CheckpointError
from tests.sparse_fixtures import pruned_ort, pruned_updown, vocab_for
from tests.test_human_output import make_tiny_runs, sparsecap

DENSITIES = [0.0, 1e-4, 0.003, 0.02, 0.1, 0.5, 0.9, 1.0]
SHAPES = [(4000,), (37, 53), (6, 5, 7)]


def _random(shape: tuple[int, ...], density: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < density)


def _round_trip(t: torch.Tensor, vdtype: torch.dtype, kinds: tuple[str, ...]) -> tuple[torch.Tensor, dict, dict]:
    parts, entry = encode_tensor("w", t, vdtype, kinds)
    return decode_tensor("w", parts, entry), parts, entry


# --- index codings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", DENSITIES)
def test_every_index_coding_round_trips_exactly(shape, density):
    t = _random(shape, density, seed=int(density * 1e4))
    sizes = {}
    for kinds in [("bitmask",), ("csr",), ("rice",)]:
        back, _, entry = _round_trip(t, torch.float32, kinds)
        assert back.dtype == t.dtype and back.shape == t.shape and torch.equal(back, t), kinds
        assert entry["nnz"] == int((t != 0).sum())
        sizes[entry["kind"]] = entry["bytes"]
    back, _, entry = _round_trip(t, torch.float32, SPARSE_KINDS)
    assert torch.equal(back, t)
    # the choice is the smallest (dense only when no coding is smaller than it)
    assert entry["bytes"] == min(sizes.values()), (entry, sizes)
    assert entry["kind"] != "dense" or sizes.get("dense", 0) <= min(sizes.values())


def test_rice_handles_long_gaps_and_the_ends_of_the_tensor():
    n = 300_000
    for where in ([0], [n - 1], [0, n - 1], [5, 5 + 256, 5 + 256 + 65536, 5 + 256 + 65536 + 1, n - 1],
                  [254, 255, 255 + 255, 255 + 255 + 65535, 200_000], list(range(0, n, 70_001))):
        t = torch.zeros(n)
        t[where] = torch.arange(1.0, len(where) + 1)
        back, parts, entry = _round_trip(t, torch.float32, ("rice",))
        assert entry["kind"] == "rice" and torch.equal(back, t), where
        assert entry["bytes"] < 64 + 4 * len(where)  # a few bytes per non-zero, whatever the gaps
        pos = torch.tensor(where)
        for k in (0, 3, 8, 17, 20):  # any Rice parameter decodes exactly, also ones far from the best
            q, r = rice_encode(pos, n, k)
            assert torch.equal(rice_decode(q, r, k, len(where), n), pos)
            with pytest.raises(ValueError, match="elements"):  # the streams spell out the size: a wrong shape fails
                rice_decode(q, r, k, len(where), n + 1)
    # a 2-D tensor whose non-zeros are one per 70 000 elements, across rows
    t = torch.zeros(3, 100_000)
    t[0, 3], t[1, 70_000], t[2, 99_999] = 1.0, -2.0, 3.0
    back, _, entry = _round_trip(t, torch.float32, SPARSE_KINDS)
    assert entry["kind"] == "rice" and torch.equal(back, t)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (5, 0), (3, 4)])
@pytest.mark.parametrize("vdtype", [torch.float32, torch.float16, torch.int8])
def test_empty_and_all_zero_tensors(shape, vdtype):
    t = torch.zeros(shape)
    for kinds in [("bitmask",), ("csr",), ("rice",), SPARSE_KINDS]:
        back, _, entry = _round_trip(t, vdtype, kinds)
        assert back.shape == t.shape and back.dtype == t.dtype and not bool(back.any()), (kinds, entry)
        assert entry["nnz"] == 0


def test_rice_is_near_the_entropy_bound():
    g = torch.Generator().manual_seed(1)
    n = 200_000
    for density in (0.001, 0.009, 0.05, 0.2):
        pos = (torch.rand(n, generator=g) < density).nonzero().reshape(-1)
        gaps = gaps_of(pos, n)
        assert gaps.numel() == pos.numel() + 1 and int(gaps.sum()) == n - pos.numel()
        k_best, bits = rice_parameter(gaps)
        # the chosen k is the best one
        for k in range(0, 20):
            assert (int((gaps >> k).sum()) + gaps.numel() * (1 + k)) >= bits
        bound = (math.lgamma(n + 1) - math.lgamma(pos.numel() + 1) - math.lgamma(n - pos.numel() + 1)) / math.log(2)
        assert rice_bytes(gaps) * 8 <= 1.06 * bound + 16, density
        bitmask = n / 8
        assert rice_bytes(gaps) < bitmask


# --- int8 values -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2000,), (40, 300), (8, 3, 50)])
def test_int8_error_is_at_most_half_a_step_per_row(shape):
    g = torch.Generator().manual_seed(2)
    t = torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < 0.3)
    if len(shape) >= 2:  # rows of very different magnitudes: one scale each
        t = t * torch.logspace(-3, 3, shape[0]).reshape(-1, *[1] * (len(shape) - 1))
    for kinds in [("bitmask",), ("csr",), ("rice",), SPARSE_KINDS]:
        back, parts, entry = _round_trip(t, torch.int8, kinds)
        scale = parts["w::scale"].float()
        assert entry["values"] == "int8" and scale.numel() == scale_rows(shape) == (shape[0] if len(shape) > 1 else 1)
        assert parts["w::scale"].dtype == torch.float16 and back.dtype == torch.float32
        err = (back - t).abs().reshape(scale.numel(), -1)
        assert bool((err <= scale[:, None] / 2 * (1 + 1e-6)).all())
        # zeros stay zero; a non-zero is dropped only when it rounds to 0
        assert not bool(back[t == 0].any())
        assert entry["zeroed"] == int(((t != 0) & (back == 0)).sum())
        assert entry["nnz"] + entry["zeroed"] == int((t != 0).sum())


def test_int8_scales_fall_back_to_fp32_and_keep_the_dtype():
    t = torch.randn(3, 500)
    t[0] *= 1e-7  # 1e-7 / 127 is below what an fp16 scale holds
    q, scale = quantize_int8(t)
    assert scale.dtype == torch.float32 and q.dtype == torch.int8 and int(q.abs().max()) == 127
    back, parts, entry = _round_trip(t, torch.int8, SPARSE_KINDS)
    assert entry["values"] == "int8" and parts["w::scale"].dtype == torch.float32
    assert bool(((back - t).abs() <= parts["w::scale"][:, None] / 2 * (1 + 1e-6)).all())
    half = (torch.randn(20, 300) * (torch.rand(20, 300) < 0.2)).to(torch.bfloat16)
    back, parts, entry = _round_trip(half, torch.int8, SPARSE_KINDS)
    assert back.dtype == torch.bfloat16 and entry["values"] == "int8"
    err = (back.float() - half.float()).abs()
    assert bool((err <= parts["w::scale"].float()[:, None] / 2 + 1e-2 * half.float().abs()).all())


def test_int8_falls_back_to_fp16_where_the_scales_cost_more():
    t = torch.zeros(100, 40)
    t[::3, 7] = torch.linspace(-1, 1, 34)  # one non-zero in every third row: a scale per row costs more than it saves
    back, parts, entry = _round_trip(t, torch.int8, SPARSE_KINDS)
    assert "values" not in entry and "w::scale" not in parts and parts["w::values"].dtype == torch.float16
    assert torch.equal(back, t.half().float())
    assert entry["bytes"] <= encode_tensor("w", t, torch.int8, SPARSE_KINDS)[1]["bytes"]


def _dense_file(tmp_path: Path, model) -> Path:
    path = tmp_path / "dense.safetensors"
    save_model(path, model, vocab_for(model), step=3)
    return path


@pytest.mark.parametrize("make", [pruned_updown, pruned_ort])
def test_int8_model_file_loads_and_is_smallest(tmp_path: Path, make):
    model = make(0.95)
    src = _dense_file(tmp_path, model)
    sizes = {}
    for values in ("fp32", "fp16", "int8"):
        out = tmp_path / f"{values}.safetensors"
        meta = export_sparse(src, out, values)
        assert meta["version"] == VERSION == 2 and meta["values"] == values
        sizes[values] = out.stat().st_size
        sizes[values + "_tensors"] = sum(e["bytes"] for e in meta["storage"].values())
    # these tiny models have short rows (a scale per row barely pays): the tensors never grow, the header may a little
    assert sizes["int8_tensors"] <= sizes["fp16_tensors"] < sizes["fp32_tensors"]
    assert sizes["fp16"] < sizes["fp32"] and sizes["int8"] < sizes["fp16"] + 400
    loaded, _, meta = load_model(tmp_path / "int8.safetensors")
    tensors, _ = read_file(tmp_path / "int8.safetensors")
    ref, got = model.state_dict(), loaded.state_dict()
    for name, t in ref.items():
        assert got[name].dtype == t.dtype and got[name].shape == t.shape
        entry = meta["storage"].get(name)
        if entry is not None and entry.get("values") == "int8":
            assert entry["pruned"] and tensors[f"{name}::scale"].numel() == t.shape[0]
            step = tensors[f"{name}::scale"].float().reshape(-1, *[1] * (t.dim() - 1))
            assert bool(((got[name] - t).abs() <= step / 2 * (1 + 1e-6)).all()), name
            assert not bool(got[name][t == 0].any()), name
        elif t.is_floating_point():  # the rest, and pruned tensors where int8 does not pay: fp16
            assert torch.allclose(got[name], t, rtol=1e-3, atol=1e-4), name
            assert entry is None or torch.equal(got[name] != 0, t != 0), name
        else:
            assert torch.equal(got[name], t), name


# --- old files -------------------------------------------------------------------------------------------------------

#: files written by the version-1 writer (the code before this change), zlib + base64, for :func:`_golden_state`
GOLDEN_V1 = {
    "fp32": (
    "eNqtk0toE0EYx0cbNShifSA+LmEoiLDK7ubZ0CaxvqsHRQSxW8Ik2djYzW7IbhJrCESp4KsqCuJBxJOIpwoe9GC2ePDkQbAHD+JBEDyIeBM8iP"
    "+ZJLXpQ0Xc4cc382X+3/+bYTLpIeKr0mQyrzsswxyWTNJolZatNEvRKNVotaZRKlG7wIp2zhlDrqrNrDQa9ck7e1U1KPk0appneaLXLxalvG7w"
    "paLKMk8ww0jO0bXTLaGi+mcyv9R+uQb/vJXRDW7OF1mrmGeOaE9U1NOssKM526E023WsIjulN7utKLwSJqM5M8OnGk3lnDyzRzXKDe0RVtB5fk"
    "hFp355mCczzlgzqdGsYTHHrzY3t3qNhPgiNeboNl8GFHGYQrFk6sLCKZb0Gk9V1Hnmabv478bhDt9IYBHbVI7Z84wzumnrc63/ztYvd/gqqtxp"
    "nGWG3XROWyXT+TvrucY50wkFOmyVztMu5MkfRJkZJd0WDyJb4J0jxwxcgUiKN1PW8fIsE0uF1qRml/ylC3tkD4YC/N3w3mgUnVHxZ7CyWVt3UG"
    "RIliLD0PF7nS3b51dnyfhdzhVGJEUV0ooSjbYbXaxAJDS/AORSIKyKEuqfS4TnV4BaCspyu0LaMjpOroR+L4dUCiqBGXnRqiyuV5UFCigBKRgM"
    "tS8Bf76O/o9HZvsHF9AHQ1LIrwzXaj7xrSDtr+7uP2G6E5OaO+095G5hvS57ts19uHaj+yXncU+Pf2x8C7xojH+81+iRKo3YhNx4/O7N81f9qz"
    "n9mPcjF8NvMeyJYW8Mmhi0cdSIo1YcNeOoHYdHHF5xeILbU6R+c4qQ64hXEC8ijiOeA1XggDzIgiQ4AY6CQbAb9IEg2Am2AR/YDNaBVcADvruE"
    "fAbvwWvwAjwBD8AdcBmcARpIgB7gBW8bhNwHR8DUc/Tbh4uKEVIAk+AT6MYZJHAAZFpnugbugkfgKXgJpsEH8BX8AMsThKwGG8BWQMF2IIMwiI"
    "G94DA4Bk4CBkaABcqgBs4nSP0C4iXEq4g3EG8hEngM7oL3LlJfP0DIngFSd8DNgS6ykqwlm8gS4iVrsHGJGEvF6BLD0xrLxFguxgpyLuHr9nqW"
    "/o/wEycBBUU="
    ),
    "fp16": (
    "eNqtkzlM21AYxx9HS9SlKRNjZBgYDPKROI4LwTlU0Q5V1ENCIiiYxCkBJ45sh0CjSKnE0LEDQwckMnRgQtCDJuFyjqESCyMjE+rIRse+90LaHC"
    "BQVX+D3/fX+3+/971jsxfgL0OEQnHZkCKSIYVChJAhltSwNEcIRJDIZIMEQRKSEpN0WYdSJgvTJVnTY2oCpjTMoqoWlww8XU9Kmi6HpeRIfTRC"
    "Y/uSpKSwO0hEkzSHNd1QNemNjEoGiTScJ9jgYDGWiKBhkJiLGXFJXwwSJEz0eSkpI32aoUgbS80gMWKs1EVYVVElg2XqkxOJt0jlOZTMrRiyjl"
    "LG7kR5UkslZIwwtJScRVKa6YCHde3fwc4WrpO6ATsHt7QDHJETutyOvhuWpVq4XBs3Kil6HRxWUwnjbuR2bixhcPYWKt0C5a9johuDr0PMWKkf"
    "dyNDc6hRF8M4miq6WJyk4rKCAQyFO5EUJdTma8iNpTDsH+Wvm6UQP65GZKV+fbNkfQfQRcetQfkpZ0eLRH0TAuyawG9BjUZ12YD3dpoi+RnoQ0"
    "fWbHtCc002dEztRp7ksDNNC0LjFdzk57lOP8eTjJ3CFZjbKzg7C0A3yTjsjQphVWnp+1a7w04yVy0gu6amb/Yz9DUFYAcsTTX2AL7qlvW/5pv5"
    "jk4/9JIs75jJZm194Orb1/fOS1Ol46K7uFMYLJDf+3cvvxa/rO5sbC1sLgxvjK7SRfbS3s+RzkF+h3e7jl1TwrmgPwZj27W12nItWBNrQzVL7b"
    "Sar85Xqeqvill5XwlUBipn5c1yssyXQfmH+cGcMm3mydHs0cVh7tB6mD+gDsz9wL65d1YCJVtRLJi74FvuM9gCQ4DKsTmH6Mzxsy5RsEFScuxs"
    "LDBujlPuvNs6kZu4mKDEeTEvnopWz6Qn5yl4LjzD3lnvR++J1+ITfcu+bd9Pn9VP+if9EX/Ov+4HfOAZ9Xw9YHvx6eXaqx7wADwCA6ALWMBDuA"
    "ldOLpx9ODovYp7OO7j6APvRJvV0tv9P36/Ae2d5T0="
    ),
}


def _golden_state() -> dict[str, torch.Tensor]:
    a = torch.arange(20 * 30, dtype=torch.float32).reshape(20, 30)
    w1 = torch.where(a % 7 == 0, (a - 300) / 64, torch.zeros(()))  # ~14 % dense: bitmask
    w2 = torch.where(a % 97 == 3, (a + 1) / 8, torch.zeros(()))  # ~1 % dense: CSR
    return {"w1": w1, "w2": w2, "bias": torch.linspace(-1, 1, 30), "count": torch.tensor(7)}


@pytest.mark.parametrize("values", ["fp32", "fp16"])
def test_files_written_by_the_version_1_writer_still_load(tmp_path: Path, values: str):
    path = tmp_path / f"v1-{values}.safetensors"
    path.write_bytes(zlib.decompress(base64.b64decode(GOLDEN_V1[values])))
    state, meta = read_state(path)
    assert meta["version"] == 1 and meta["values"] == values
    assert {k: e["kind"] for k, e in meta["storage"].items()} == {"w1": "bitmask", "w2": "csr", "bias": "dense",
                                                                  "count": "dense"}
    for name, t in _golden_state().items():
        want = t.half().to(t.dtype) if values == "fp16" and t.is_floating_point() else t
        assert state[name].dtype == t.dtype and torch.equal(state[name], want), name


def test_old_kinds_forced_and_version_1_metadata_load(tmp_path: Path):
    model = pruned_updown(0.95)
    state = model.state_dict()
    meta = {"model": model.config, "vocab": vocab_for(model).to_json()}
    path = tmp_path / "old.safetensors"
    full = save_sparse(path, state, meta, "fp16", kinds=("bitmask", "csr"))
    assert {e["kind"] for e in full["storage"].values() if e.get("pruned")} <= {"bitmask", "csr"}
    tensors, raw = read_file(path)
    v1 = tmp_path / "v1.safetensors"  # the same file labelled version 1, as the old writer labelled it
    save_file(tensors, str(v1), metadata={**{k: json.dumps(v) for k, v in raw.items()}, "version": "1"})
    for p in (path, v1):
        loaded, _, _ = load_model(p)
        for name, t in state.items():
            assert torch.allclose(loaded.state_dict()[name], t, rtol=1e-3, atol=1e-4), name
    # the default choice is never bigger than the old kinds
    assert len(pack_sparse(state, meta, "fp16")[0]) < path.stat().st_size


def test_corrupt_rice_streams_are_one_line_errors(tmp_path: Path):
    good = tmp_path / "good.safetensors"
    state = {"a.weight": _random((200, 500), 0.01, seed=3), "b.weight": _random((50, 60), 0.5, seed=4)}
    save_sparse(good, state, {"model": {}, "vocab": "{}"}, "int8", pruned=list(state))
    tensors, meta = read_file(good)
    raw = {k: json.dumps(v) for k, v in meta.items()}
    name = "a.weight"
    assert meta["storage"][name]["kind"] == "rice" and meta["storage"][name]["values"] == "int8"
    assert meta["storage"]["b.weight"]["kind"] == "bitmask"
    back, _ = read_state(good)
    kept = int((back[name] != 0).sum())
    assert kept + meta["storage"][name]["zeroed"] == int((state[name] != 0).sum()) and kept > 900
    for part, change in (("q", lambda t: t[:-1].clone()), ("r", lambda t: t[:-1].clone()),
                         ("scale", lambda t: t[:-1].clone()), ("q", lambda t: torch.zeros_like(t))):
        key = f"{name}::{part}"
        bad = tmp_path / "bad.safetensors"
        save_file({**tensors, key: change(tensors[key])}, str(bad), metadata=raw)
        with pytest.raises(CheckpointError) as exc:
            read_state(bad)
        assert "\n" not in str(exc.value) and name in str(exc.value), str(exc.value)
    for entry in ({"shape": [10**6, 10**6]}, {"shape": [200, 501]}, {"k": 99}):
        bad_meta = {**meta["storage"], name: {**meta["storage"][name], **entry}}
        save_file(tensors, str(tmp_path / "m.safetensors"), metadata={**raw, "storage": json.dumps(bad_meta)})
        with pytest.raises(CheckpointError, match=name):  # refused before anything of that size is allocated
            read_state(tmp_path / "m.safetensors")
    fp16 = tmp_path / "fp16.safetensors"
    save_sparse(fp16, state, {"model": {}, "vocab": "{}"}, "fp16", pruned=list(state))
    tensors16, meta16 = read_file(fp16)
    bad_meta = {**meta16["storage"], name: {**meta16["storage"][name], "shape": [10**6, 10**6]}}
    save_file(tensors16, str(tmp_path / "s.safetensors"),
              metadata={**{k: json.dumps(v) for k, v in meta16.items()}, "storage": json.dumps(bad_meta)})
    with pytest.raises(CheckpointError, match="elements"):
        read_state(tmp_path / "s.safetensors")
    bad_k = {**meta["storage"], name: {**meta["storage"][name], "k": 99}}
    save_file(tensors, str(tmp_path / "k.safetensors"), metadata={**raw, "storage": json.dumps(bad_k)})
    with pytest.raises(CheckpointError, match="Rice parameter"):
        read_state(tmp_path / "k.safetensors")


def test_encode_state_refuses_unknown_values_and_kinds():
    from sparsecap_engine.errors import UsageError

    with pytest.raises(UsageError, match="int8"):
        encode_state({"w": torch.zeros(3, 3)}, "int4")
    with pytest.raises(UsageError, match="storage kind"):
        encode_state({"w": torch.zeros(3, 3)}, "fp32", kinds=("coo",))


# --- export --check on a run the project's own training wrote --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dense run trained 4 steps, pruned by magnitude to 90 % in 2 more (``tests/test_human_output.py``'s)."""
    return make_tiny_runs(tmp_path_factory.mktemp("compact"))["mag"]


@pytest.mark.slow
def test_export_int8_check_prints_cider_and_size_change(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "m8.safetensors"
    before = sorted(p.relative_to(tiny_run) for p in tiny_run.rglob("*"))
    res = sparsecap("export", str(tiny_run), "--out", str(out), "--values", "int8", "--check", "--quiet")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith(f"wrote {out}") and "storage " in lines[0]
    assert any(line.startswith("check on the test split (all 4 images, greedy): CIDEr-D ") and "(int8), change "
               in line for line in lines), res.stdout
    assert any(line.startswith("size ") and "with exact fp16 values" in line for line in lines), res.stdout
    assert sorted(p.relative_to(tiny_run) for p in tiny_run.rglob("*")) == before  # nothing written into the run

    res = sparsecap("export", str(tiny_run / "checkpoints" / "pruned.safetensors"), "--out", str(out), "--values",
                    "int8", "--check", "--limit", "2", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    check = info["check"]
    assert check["images"] == 2 and check["split_images"] == 4 and check["metric"] == "CIDEr-D"
    assert check["change"] == pytest.approx(check["export"] - check["source"])
    assert 0 <= check["captions_changed"] <= 2 and check["exact_bytes"] > info["bytes"] == out.stat().st_size
    state, meta = read_state(out)
    assert meta["values"] == "int8" and meta["version"] == 2


@pytest.mark.slow
def test_export_check_needs_a_run(tiny_run: Path, tmp_path: Path):
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes((tiny_run / "checkpoints" / "pruned.safetensors").read_bytes())
    out = tmp_path / "o.safetensors"
    res = sparsecap("export", str(bare), "--out", str(out), "--values", "int8", "--check")
    assert res.returncode != 0 and not out.exists()
    err = res.stderr.strip()
    assert "--check needs a run directory" in err and len(err.splitlines()) == 1, err
    res = sparsecap("export", str(tiny_run), "--out", str(out), "--check", "--limit", "-1")
    assert res.returncode != 0 and "--limit" in res.stderr and not out.exists()
