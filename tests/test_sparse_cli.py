import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sparsecap_cli.main import app
from sparsecap_engine.checkpoint.model_io import read_state, save_model
from sparsecap_engine.checkpoint.sparse import FORMAT
from tests.sparse_fixtures import pruned_updown, vocab_for

runner = CliRunner()

ROW_KEYS = {"name", "shape", "numel", "nnz", "sparsity", "bytes", "storage"}
SIZE_KEYS = {"file", "dense_fp32", "dense_fp16", "coo_int64_fp32", "coo_int64_fp16", "sparse_fp32", "sparse_fp16"}


@pytest.fixture()
def dense_ckpt(tmp_path: Path) -> Path:
    model = pruned_updown(0.95)
    path = tmp_path / "pruned.safetensors"
    save_model(path, model, vocab_for(model), step=5)
    return path


def _export(src: Path, out: Path, *extra: str) -> dict:
    res = runner.invoke(app, ["export", str(src), "--out", str(out), "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_export_through_cli(dense_ckpt: Path, tmp_path: Path):
    out = tmp_path / "s16.safetensors"
    info = _export(dense_ckpt, out, "--values", "fp16")
    assert info["values"] == "fp16" and info["bytes"] == out.stat().st_size < info["source_bytes"]
    assert set(info["storage"]) <= {"bitmask", "csr", "rice", "dense"} and sum(info["storage"].values()) == 11
    state, meta = read_state(out)
    assert meta["format"] == FORMAT and meta["step"] == 5
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic: no temp file left

    res = runner.invoke(app, ["export", str(dense_ckpt), "--out", str(tmp_path / "x.safetensors"), "--values", "int4"])
    assert res.exit_code != 0


def test_inspect_json_schema_and_numbers(dense_ckpt: Path, tmp_path: Path):
    out = tmp_path / "s32.safetensors"
    _export(dense_ckpt, out)
    reports = {}
    for path in (dense_ckpt, out):
        res = runner.invoke(app, ["inspect", str(path), "--json"])
        assert res.exit_code == 0, res.output
        reports[path.name] = info = json.loads(res.stdout)
        assert {"report_version", "format", "tensors", "totals", "sizes", "parameters", "file_bytes"} <= set(info)
        assert set(info["sizes"]) == SIZE_KEYS and info["sizes"]["file"] == path.stat().st_size
        rows = info["tensors"]
        assert len(rows) == 11 and all(set(r) == ROW_KEYS for r in rows)
        for r in rows:
            assert r["sparsity"] == pytest.approx(1 - r["nnz"] / r["numel"])
        tot = info["totals"]
        assert tot["pruned"]["nnz"] == sum(r["nnz"] for r in rows)
        assert tot["pruned"]["numel"] == sum(r["numel"] for r in rows)
        assert 0.9 < tot["pruned"]["sparsity"] < 0.99 and tot["all"]["sparsity"] < tot["pruned"]["sparsity"]
        assert tot["all"]["numel"] == info["parameters"]
        sizes = info["sizes"]
        assert sizes["dense_fp16"] < sizes["dense_fp32"]
        if path == dense_ckpt:  # the dense file is its fp32 tensors plus a JSON header
            assert 0 < sizes["file"] - sizes["dense_fp32"] < 20_000
        assert sizes["sparse_fp16"] < sizes["coo_int64_fp16"] < sizes["coo_int64_fp32"] < sizes["dense_fp32"]
    dense, sparse = reports[dense_ckpt.name], reports[out.name]
    assert [r["nnz"] for r in dense["tensors"]] == [r["nnz"] for r in sparse["tensors"]]
    assert {r["storage"] for r in dense["tensors"]} == {"dense"}
    assert {r["storage"] for r in sparse["tensors"]} <= {"bitmask", "csr", "rice"}
    assert sum(r["bytes"] for r in sparse["tensors"]) < sum(r["bytes"] for r in dense["tensors"]) / 5
    assert dense["totals"] == sparse["totals"]


def test_inspect_counts_the_words_the_output_layer_can_still_choose(tmp_path: Path):
    import torch

    model = pruned_updown(0.95)
    with torch.no_grad():
        model.decoder.logit.weight[[4, 9, 10]] = 0.0  # three words lose their whole output row
        model.decoder.logit.weight[11, 1:] = 0.0  # one keeps a single weight: still a word it can choose
        model.decoder.logit.weight[11, 0] = 0.5
    alive = int((model.decoder.logit.weight != 0).any(dim=1).sum())
    path = tmp_path / "cut.safetensors"
    save_model(path, model, vocab_for(model))
    for ckpt in (path, tmp_path / "cut-sparse.safetensors"):
        if ckpt != path:
            _export(path, ckpt)
        res = runner.invoke(app, ["inspect", str(ckpt), "--json"])
        words = json.loads(res.stdout)["output_words"]
        assert words == {"layer": "decoder.logit.weight", "words": model.config["vocab_size"], "emit": alive}
        assert alive <= model.config["vocab_size"] - 3
    res = runner.invoke(app, ["inspect", str(path)])
    assert f"{alive:,} of {model.config['vocab_size']:,} (decoder.logit.weight)" in res.stdout


def test_inspect_table_plot_and_bench(dense_ckpt: Path, tmp_path: Path):
    png = tmp_path / "sparsity.png"
    res = runner.invoke(app, ["inspect", str(dense_ckpt), "--plot", str(png), "--bench", "--params"])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pruned total" in res.stdout and "coo_int64_fp16" in res.stdout and "speed-up" in res.stdout
    res = runner.invoke(app, ["inspect", str(dense_ckpt), "--json", "--bench"])
    bench = json.loads(res.stdout)["bench"]
    assert bench["converted_layers"] == 9 and bench["threads"] == 1 and bench["same_tokens"] is True
    assert bench["speedup"] == pytest.approx(bench["dense_ms"] / bench["sparse_ms"])


def test_caption_sparse_matches_dense(dense_ckpt: Path, tmp_path: Path):
    out = tmp_path / "s.safetensors"
    _export(dense_ckpt, out, "--values", "fp32")
    image = tmp_path / "img.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(image)
    captions = {}
    for ckpt in (dense_ckpt, out):
        for mode in ("off", "on", "auto"):
            for beam in ("1", "3"):
                res = runner.invoke(app, ["caption", str(image), "--checkpoint", str(ckpt), "--sparse", mode,
                                          "--beam", beam, "--json"])
                assert res.exit_code == 0, res.output
                captions[(ckpt.name, mode, beam)] = json.loads(res.stdout)[0]["caption"]
    for beam in ("1", "3"):
        assert len({c for k, c in captions.items() if k[2] == beam}) == 1
    res = runner.invoke(app, ["caption", str(image), "--checkpoint", str(out), "--sparse", "sometimes"])
    assert res.exit_code != 0


def test_bad_checkpoint_is_one_line_error(tmp_path: Path):
    from sparsecap_engine.errors import CheckpointError

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    for args in (["inspect", str(junk)], ["export", str(junk), "--out", str(tmp_path / "o.safetensors")]):
        res = runner.invoke(app, args)
        assert isinstance(res.exception, CheckpointError) and "\n" not in str(res.exception)
    assert not (tmp_path / "o.safetensors").exists()


def test_run_dir_uses_pruned_checkpoint_and_its_masks(tmp_path: Path):
    from sparsecap_engine.checkpoint.pruned import save_pruned
    from sparsecap_engine.pruning.scope import prunable

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text("")
    model = pruned_updown(0.9)
    save_model(run / "checkpoints" / "best.safetensors", model, vocab_for(model))
    masks = {n: getattr(m, p) != 0 for n, (m, p) in prunable(model).items() if not n.endswith("alpha_net.weight")}
    save_pruned(run / "checkpoints" / "pruned.safetensors", model, vocab_for(model), masks, {"sparsity": 0.9})
    res = runner.invoke(app, ["inspect", str(run), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["checkpoint"].endswith("pruned.safetensors") and len(info["tensors"]) == 10  # the masks' names
    out = tmp_path / "run.safetensors"
    info = _export(run, out, "--values", "fp16")
    assert info["source"].endswith("pruned.safetensors") and out.is_file()
