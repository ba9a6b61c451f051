"""The defects ``benchmarks/probe_bad_input.py`` found (issue 12), each pinned in process: a bad value is one of the
project's errors (one red line, exit 1 or 2) raised before anything is written, never an exception of another class,
a hang, an allocation of gigabytes, or nonsense accepted."""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import zlib
from pathlib import Path

import pytest
import torch

from sparsecap_engine.atomic import atomic_write_bytes
from sparsecap_engine.checkpoint.model_io import load_model, read_state, save_model
from sparsecap_engine.config import RunConfig
from sparsecap_engine.errors import CheckpointError, DataError, OutputError, RunError, UsageError
from sparsecap_engine.runs import RunDir, check_run_name, discard_unstarted_runs
from sparsecap_engine.text.vocab import Vocab
from tests.test_models_updown import tiny

# ------------------------------------------------------------------------------------------ run names and folders


@pytest.mark.parametrize("name", ["ok\nname", "tab\there", "x" * 256, "é" * 128])
def test_run_names_with_control_characters_or_too_long_are_refused(name: str):
    with pytest.raises(UsageError, match="--name"):
        check_run_name(name)


def test_sweep_names_are_checked_like_run_names():
    with pytest.raises(UsageError, match="a sweep name is one folder name.*--sweeps-root"):
        check_run_name("../x", "--sweeps-root", "sweep")
    assert check_run_name("ünï côdé") == "ünï côdé"


def test_run_dir_under_a_file_is_a_run_error(tmp_path: Path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunError, match="cannot create run directory"):
        RunDir.create(tmp_path / "f" / "runs" / "t")
    with pytest.raises(RunError, match="cannot create run directory"):
        RunDir.create(tmp_path / ("x" * 300) / "t")


def test_unstarted_runs_are_discarded_and_started_ones_kept(tmp_path: Path):
    fresh = RunDir.create(tmp_path / "runs" / "fresh")  # runs/ did not exist: both go
    (fresh.path / "config.toml").write_text("[train]\n")
    started = RunDir.create(tmp_path / "kept" / "started")
    (started.path / "events.jsonl").write_text(json.dumps({"kind": "run_start", "step": 0}) + "\n")
    (tmp_path / "empty").mkdir()
    existing = RunDir.create(tmp_path / "empty")  # the folder was there: only what was put in it goes
    (existing.path / "vocab.json").write_text("{}")
    discard_unstarted_runs()
    assert not (tmp_path / "runs").exists()
    assert (started.path / "events.jsonl").is_file()
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())
    discard_unstarted_runs()  # idempotent


# ----------------------------------------------------------------------------------------------- output paths


def test_output_paths_that_cannot_be_files_are_output_errors(tmp_path: Path):
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "dir", tmp_path / "fifo", Path(""), tmp_path / "file" / "out.bin"):
        with pytest.raises(OutputError, match="cannot write"):
            atomic_write_bytes(path, b"data")
    assert (tmp_path / "fifo").exists() and not (tmp_path / "fifo").is_file()  # the FIFO is not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "fifo", "file"]  # no temp file left


def test_unchanged_content_is_not_rewritten(tmp_path: Path):
    path = tmp_path / "config.toml"
    atomic_write_bytes(path, b"same")
    os.utime(path, ns=(1, 1))
    atomic_write_bytes(path, b"same")
    assert path.stat().st_mtime_ns == 1  # a resume that changes nothing writes nothing
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"


def test_vocab_save_leaves_an_identical_file_alone(tmp_path: Path):
    vocab = Vocab(["a", "b"])
    vocab.save(tmp_path / "vocab.json")
    os.utime(tmp_path / "vocab.json", ns=(1, 1))
    vocab.save(tmp_path / "vocab.json")
    assert (tmp_path / "vocab.json").stat().st_mtime_ns == 1


# ---------------------------------------------------------------------------------------------------- images


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [100_000, 12_000])  # past 2× Pillow's limit (an error) and past 1× (a warning)
def test_decompression_bombs_are_data_errors(tmp_path: Path, side: int, recwarn: pytest.WarningsRecorder):
    from sparsecap_engine.data.images import load_image

    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(side, side))
    with pytest.raises(DataError, match="image too large to decode safely"):
        load_image(path, 32)
    assert not [w for w in recwarn if "DecompressionBomb" in str(w.category)]


def test_image_size_bounds():
    from sparsecap_engine.data.images import image_size_problem

    assert image_size_problem(32) is None
    for bad in (0, -32, 10**7, "big", 32.5, True):
        assert image_size_problem(bad)


# -------------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("kw, message", [
    (dict(method="sample", seed=2**70), "--seed must fit in 64 bits"),
    (dict(max_len=10**9), "--max-len must be at most"),
    (dict(min_len=100, max_len=20), "--min-len 100 is longer than --max-len 20"),
    (dict(method="sample", n_best=10**20), "--n-best must be at most"),
])
def test_decode_options_out_of_range(kw: dict, message: str):
    from sparsecap_engine.decoding.api import DecodeOptions

    with pytest.raises(UsageError, match=message):
        DecodeOptions(**kw).check()
    DecodeOptions(method="sample", seed=-1, n_best=3).check()  # a negative seed is a seed


@pytest.mark.parametrize("name", ["tpu", "meta", "", "gpu", "cuda:x", "cpu:0", "cuda:99999"])
def test_unknown_devices_are_usage_errors(name: str):
    from sparsecap_engine.training.setup import resolve_device

    with pytest.raises(UsageError):
        resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu")


# ------------------------------------------------------------------------------------------------ model config


@pytest.mark.parametrize("change", [
    {"rnn_size": "big"}, {"rnn_size": 1.5}, {"rnn_size": 10**9}, {"rnn_size": 100_000}, {"drop_prob_lm": 2},
    {"encoder_args": 5}, {"encoder_args": {"channels": []}}, {"encoder_args": {"channels": [0]}},
    {"encoder_args": {"channels": [-8, 16]}},
])
def test_model_configs_that_cannot_be_built(change: dict):
    from sparsecap_engine.models.registry import model_problem, preset

    cfg = {**preset("ud-small"), **change}
    assert model_problem(cfg)
    assert model_problem(preset("ud-small")) is None


def _config(**sets) -> RunConfig:
    cfg = RunConfig()
    cfg.model.overrides = {"rnn_size": 32, "input_encoding_size": 16, "att_hid_size": 16,
                           "encoder_args": {"channels": [8, 16]}}
    return cfg.override(sets)


@pytest.mark.parametrize("sets, message", [
    ({"data.image_size": 0}, "data.image_size must be between"),
    ({"data.image_size": 10**6}, "data.image_size must be between"),
    ({"data.max_len": 10**9}, "data.max_len must be at most"),
    ({"data.min_word_count": -1}, "data.min_word_count"),
    ({"data.radix_base": -5}, "data.radix_base"),
    ({"train.num_threads": -1}, "train.num_threads"),
    ({"train.num_threads": 100_000}, "train.num_threads"),
    ({"train.val_images": 0}, "train.val_images"),
    ({"train.samples": -1}, "train.samples"),
    ({"train.keep_steps": [-1]}, "train.keep_steps"),
    ({"scst.samples": 3}, r"\[scst\] settings start an SCST stage"),
])
def test_check_config_refuses(sets: dict, message: str):
    from sparsecap_engine.training.setup import check_config

    check_config(_config())
    with pytest.raises(UsageError, match=message):
        check_config(_config(**sets))


def test_check_config_refuses_models_that_do_not_build():
    from sparsecap_engine.training.setup import check_config

    cfg = _config()
    cfg.model.overrides["rnn_size"] = 10**9
    with pytest.raises(UsageError, match="model config"):
        check_config(cfg)


# ------------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "m.safetensors"
    save_model(path, tiny(), Vocab([f"w{i}" for i in range(16)]), step=3, image_size=32)
    return path


def _rewrite(path: Path, tensors=None, **meta) -> None:
    from safetensors.torch import load_file, save_file

    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    metadata = {**header["__metadata__"], **{k: json.dumps(v) for k, v in meta.items()}}
    state = load_file(path)
    save_file(tensors(state) if tensors else state, path, metadata=metadata)


def test_nan_weights_are_refused_but_inspect_describes_them(ckpt: Path):
    from sparsecap_engine.checkpoint.inspect_report import checkpoint_report

    _rewrite(ckpt, lambda s: {k: v.fill_(math.nan) if v.is_floating_point() else v for k, v in s.items()})
    for load in (read_state, load_model):
        with pytest.raises(CheckpointError, match="NaN or infinite"):
            load(ckpt)
    assert checkpoint_report(ckpt)["parameters"] > 0


@pytest.mark.parametrize(("values", "damage"), [("fp32", "nan value"), ("fp32", "inf dense"), ("int8", "nan value"),
                                               ("int8", "inf dense"), ("int8", "huge scale")])
def test_sparse_file_with_nonfinite_parts_is_refused(tmp_path: Path, values: str, damage: str):
    """The compact sparse format is checked on its stored parts (not the decoded dense weights): a NaN value, an
    infinite dense tensor, or int8 scales whose products overflow are refused; an intact file loads."""
    from safetensors.torch import load_file, save_file

    from sparsecap_engine.checkpoint.inspect_report import checkpoint_report
    from sparsecap_engine.checkpoint.sparse import SEP, save_sparse

    model, vocab = tiny(), Vocab([f"w{i}" for i in range(16)])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for k, v in state.items():
            if k.endswith("weight") and v.dim() == 2:
                v[torch.rand(v.shape, generator=torch.Generator().manual_seed(0)) < 0.9] = 0
    path = tmp_path / "s.safetensors"
    meta = {"model": model.config, "vocab": vocab.to_json(), "encoder": model.config.get("encoder")}
    save_sparse(path, state, meta, values)
    read_state(path)  # intact: loads
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    tensors = load_file(path)
    if damage == "nan value":
        key = next(k for k in tensors if k.endswith(f"{SEP}values") and tensors[k].is_floating_point()) \
            if values == "fp32" else next(k for k in tensors if k.endswith(f"{SEP}scale"))
        tensors[key].view(-1)[0] = math.nan
    elif damage == "inf dense":
        key = next(k for k in tensors if SEP not in k and tensors[k].is_floating_point())
        tensors[key].view(-1)[0] = math.inf
    else:
        key = next(k for k in tensors if k.endswith(f"{SEP}scale"))
        tensors[key] = tensors[key].float()
        tensors[key].view(-1)[0] = 1e37  # 127 × 1e37 overflows float32
    save_file(tensors, path, metadata=header["__metadata__"])
    for load in (read_state, load_model):
        with pytest.raises(CheckpointError, match="NaN or infinite"):
            load(path)
    assert checkpoint_report(path)["parameters"] > 0


@pytest.mark.parametrize("meta", [{"vocab": 7}, {"vocab": {"itos": ["a"]}}])
def test_vocab_of_the_wrong_type_is_a_data_error(ckpt: Path, meta: dict):
    _rewrite(ckpt, **meta)
    with pytest.raises(DataError, match="not a sparsecap tokenizer"):
        load_model(ckpt)


def test_model_of_absurd_size_in_metadata_is_a_checkpoint_error(ckpt: Path, recwarn: pytest.WarningsRecorder):
    model = json.loads(_meta(ckpt)["model"])
    for size in (10**12, 0):
        _rewrite(ckpt, model={**model, "rnn_size": size})
        with pytest.raises(CheckpointError, match="does not describe a model"):
            load_model(ckpt)
    assert not recwarn.list  # torch's zero-element warning is not printed beside the error line


def _meta(path: Path) -> dict:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]


@pytest.mark.parametrize("size", ["big", -32, 10**7])
def test_image_size_in_metadata_is_checked_when_captioning(ckpt: Path, size):
    from sparsecap_engine.inference import Captioner

    _rewrite(ckpt, image_size=size)
    with pytest.raises(CheckpointError, match="image_size must be"):
        Captioner.load(checkpoint=ckpt)
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        Captioner.load(checkpoint=ckpt, device="tpu")


def test_export_refuses_what_would_not_load(ckpt: Path, tmp_path: Path):
    from sparsecap_engine.checkpoint.sparse import export_sparse

    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        export_sparse(ckpt, tmp_path / "out")
    _rewrite(ckpt, model={"name": "bogus"})
    with pytest.raises(CheckpointError):
        export_sparse(ckpt, tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()


def test_float_masks_are_refused(tmp_path: Path):
    from sparsecap_engine.checkpoint.dense import pack
    from sparsecap_engine.checkpoint.masks_file import MASKS_FORMAT, load_masks

    path = tmp_path / "m.masks.safetensors"
    path.write_bytes(pack({"decoder.w": torch.full((2, 2), 3.5)}, {"format": MASKS_FORMAT}))
    with pytest.raises(CheckpointError, match="not boolean"):
        load_masks(path)


def test_tokenizer_file_not_utf8_is_a_data_error(tmp_path: Path):
    from sparsecap_engine.text.tokenizer import load_tokenizer

    (tmp_path / "vocab.json").write_bytes(b'{"itos": ["\xff"]}')
    with pytest.raises(DataError, match="unreadable tokenizer"):
        load_tokenizer(tmp_path / "vocab.json")


# ------------------------------------------------------------------------------------------------------ resume


def _run_with_state(tmp_path: Path, ckpt: Path, step: int) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    os.replace(ckpt, run.checkpoints / "last.safetensors")
    Vocab([f"w{i}" for i in range(16)]).save(run.vocab_path)
    torch.save({"step": step}, run.checkpoints / "last.state.pt")
    return run


def test_resume_refuses_a_negative_step(tmp_path: Path, ckpt: Path):
    from sparsecap_engine.training.state import load_trainer_state

    run = _run_with_state(tmp_path, ckpt, -3)
    with pytest.raises(CheckpointError, match="step -3"):
        load_trainer_state(run, None, None, None, "cpu")


def test_resume_refuses_a_swapped_vocabulary(tmp_path: Path, ckpt: Path):
    from sparsecap_engine.training.state import check_vocab

    run = _run_with_state(tmp_path, ckpt, 3)
    check_vocab(run)
    Vocab([f"w{i}" for i in reversed(range(16))]).save(run.vocab_path)
    with pytest.raises(CheckpointError, match="is not the vocabulary last.safetensors was trained with"):
        check_vocab(run)


# ---------------------------------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("kw", [dict(mask_init=math.nan), dict(mask_init=math.inf), dict(mask_lr=math.nan),
                                dict(mask_eps=math.nan), dict(sparsity_weight=math.inf)])
def test_supermask_options_must_be_finite(kw: dict):
    from sparsecap_engine.pruning.methods import build_method

    with pytest.raises(UsageError, match="must be a finite number"):
        build_method("supermask", sparsity=0.5, total_steps=10, **kw)


def test_snip_batches_and_gradual_schedule_bounds():
    from sparsecap_engine.pruning.criteria import GradualSchedule
    from sparsecap_engine.pruning.methods import build_method

    with pytest.raises(UsageError, match="--snip-batches must be between"):
        build_method("snip", sparsity=0.5, snip_batches=10**20)
    for initial in (2.0, 0.9, math.nan):
        with pytest.raises(UsageError, match="--initial-sparsity"):
            GradualSchedule.scaled(100, 0.5, initial=initial)
    GradualSchedule.scaled(100, 0.5, initial=0.5)


# ----------------------------------------------------------------------------------------- monitor, eval, sweep


def test_event_tail_does_not_block_on_a_fifo(tmp_path: Path):
    from sparsecap_engine.event_tail import EventTail

    os.mkfifo(tmp_path / "events.jsonl")
    out: list = []
    reader = threading.Thread(target=lambda: out.append(EventTail(tmp_path / "events.jsonl").poll()), daemon=True)
    reader.start()
    reader.join(10)
    assert out == [[]]


def test_monitor_interval_must_be_finite(tmp_path: Path):
    from typer.testing import CliRunner

    from sparsecap_cli.main import app

    for value in ("nan", "inf", "0"):
        res = CliRunner().invoke(app, ["monitor", str(tmp_path), "--once", "--interval", value])
        assert isinstance(res.exception, UsageError) and "--interval" in str(res.exception), value


def test_eval_limit_and_per_image_path_are_checked_first(tmp_path: Path):
    from sparsecap_engine.recipes.evaluate import evaluate_run

    with pytest.raises(UsageError, match="--limit must be ≥ 0"):
        evaluate_run(tmp_path / "no-run", limit=-1)
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        evaluate_run(tmp_path / "no-run", per_image_path=tmp_path / "out")


@pytest.mark.parametrize("text, message", [
    ("[sweep]\nmethods = 5\n", "methods must be a comma string or a list"),
    ("sweep = 5\n", r"\[sweep\] must be a table"),
    ("[sweep]\nfinetune_steps = 'x'\n", "finetune_steps must be an integer"),
])
def test_sweep_table_types(tmp_path: Path, text: str, message: str):
    from sparsecap_engine.recipes.sweep import base_config

    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(UsageError, match=message):
        base_config(tmp_path / "c.toml")


def test_sweep_options_ranges_and_unreadable_plan(tmp_path: Path):
    from sparsecap_engine.recipes.sweep import SweepOptions, read_plan

    for kw in (dict(jobs=10**20), dict(finetune_steps=10**20), dict(slurm_time=-1), dict(slurm_gpus=-1),
               dict(slurm_cpus=0)):
        with pytest.raises(UsageError):
            SweepOptions(**kw).check()
    (tmp_path / "plan.json").write_bytes(b"\xff{")
    with pytest.raises(UsageError, match="unreadable plan"):
        read_plan(tmp_path)
