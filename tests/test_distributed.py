"""Multi-process training on the CPU (gloo), launched for real by ``sparsecap … --nproc 2`` (torchrun) or by
``torch.multiprocessing``: two processes with the same global batch give one process's loss curve, weights, masks
and validation scores; rank 0 alone writes into the run directory; stops, resumes and bad launches behave.

Tolerance: losses and weights agree to 1e-5 (only the order of floating-point sums differs); masks and validation
scores are identical."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparsecap_cli.launch import torchrun_argv
from sparsecap_engine.errors import UsageError
from sparsecap_engine.runs import read_events

TESTS = Path(__file__).parent
TINY = ["--set", "model.rnn_size=32", "--set", "model.input_encoding_size=16", "--set", "model.att_hid_size=16",
        "--set", "model.drop_prob_lm=0", "--set", "data.image_size=32"]
SCHEDULE = ["--steps", "8", "--batch-size", "4", "--val-every", "4", "--set", "train.val_images=8",
            "--set", "train.log_every=1", "--device", "cpu", "-q"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1"}


def sparsecap(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsecap_cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparsecap_engine.data.synthetic import generate_synthetic
    from sparsecap_engine.data.synthetic_features import ensure_synthetic_features

    path = generate_synthetic(tmp_path_factory.mktemp("data") / "synth", images=60, size=32)
    ensure_synthetic_features(path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def dense_pair(dataset: Path, runs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The same dense run in one process and in two (the latter under the write audit)."""
    common = ["--dataset", str(dataset), "--features", "auto", "--runs-root", str(runs), *TINY, *SCHEDULE]
    one = sparsecap("train", "--name", "one", *common)
    assert one.returncode == 0, one.stderr
    audit = tmp_path_factory.mktemp("audit")
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(TESTS / "dist_audit.py"), "train", "--name", "two", *common],
        capture_output=True, text=True, timeout=300, env={**_env(), "AUDIT_ROOT": str(runs), "AUDIT_OUT": str(audit)})
    assert two.returncode == 0, two.stderr[-3000:]
    return {"one": runs / "one", "two": runs / "two", "audit": audit}


def _train_losses(run: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for e in read_events(run / "events.jsonl"):
        if e["kind"] == "train":
            assert e["step"] not in out, f"step {e['step']} logged twice (two writers?)"
            out[e["step"]] = e["loss"]
    return out


def _val(run: Path) -> list[dict]:
    return [e["metrics"] for e in read_events(run / "events.jsonl") if e["kind"] == "val"]


@pytest.mark.slow
def test_two_processes_train_as_one(dense_pair: dict):
    one, two = dense_pair["one"], dense_pair["two"]
    a, b = _train_losses(one), _train_losses(two)
    assert sorted(a) == list(range(1, 9)) and sorted(b) == sorted(a)
    assert all(abs(a[k] - b[k]) < 1e-5 for k in a), (a, b)
    wa = torch.load(one / "checkpoints" / "last.state.pt", weights_only=True)
    wb = torch.load(two / "checkpoints" / "last.state.pt", weights_only=True)
    assert (wa["world"], wb["world"]) == (1, 2)
    diff = max(float((wa["model"][k].float() - wb["model"][k].float()).abs().max()) for k in wa["model"])
    assert diff < 1e-5
    assert _val(one) == _val(two) and len(_val(two)) == 2  # sharded validation: the same scores
    starts = [e for e in read_events(two / "events.jsonl") if e["kind"] == "run_start"]
    assert len(starts) == 1 and starts[0]["processes"] == 2


@pytest.mark.slow
def test_only_rank_zero_writes_into_the_run(dense_pair: dict):
    audit = dense_pair["audit"]
    rank0 = json.loads((audit / "rank-0.json").read_text())
    rank1 = json.loads((audit / "rank-1.json").read_text())
    assert rank1 == []
    written = {Path(p).name for _, p in rank0}
    assert {"events.jsonl", "config.toml", "vocab.json", ".lock", "last.safetensors", "last.state.pt",
            "best.safetensors", "curves.png"} <= written


@pytest.mark.slow
def test_resume_needs_the_same_number_of_processes(dense_pair: dict, runs: Path):
    res = sparsecap("train", "--resume", "--name", "two", "--runs-root", str(runs), "-q")
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "trained by 2 process(es), this resume has 1" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["supermask", "gradual", "snip", "magnitude", "lottery"])
def test_pruning_masks_match_one_process(method: str, dataset: Path, runs: Path, dense_pair: dict):
    """Every method's masks on two processes are those of one (the recipe also compares the ranks' weights and
    masks at each validation and fails the run on any difference)."""
    source = ["--from", str(dense_pair["one"])] if method in ("magnitude", "lottery") else []
    common = ["prune", "--method", method, "--sparsity", "0.8", *source, "--dataset", str(dataset),
              "--features", "auto", "--runs-root", str(runs), *TINY, *SCHEDULE]
    for n in (1, 2):
        res = sparsecap(*common, "--name", f"{method}-{n}", "--nproc", str(n))
        assert res.returncode == 0, res.stderr[-3000:]
    a = load_file(runs / f"{method}-1" / "checkpoints" / "last.masks.safetensors")
    b = load_file(runs / f"{method}-2" / "checkpoints" / "last.masks.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    kept = sum(int(m.sum()) for m in a.values()) / sum(m.numel() for m in a.values())
    assert abs((1 - kept) - 0.8) < 0.05
    la, lb = _train_losses(runs / f"{method}-1"), _train_losses(runs / f"{method}-2")
    assert all(abs(la[k] - lb[k]) < 1e-5 for k in la)


@pytest.mark.slow
def test_scst_on_two_processes(dense_pair: dict, runs: Path):
    """SCST shards its images (each process draws its own samples, so the curve is not one process's): it runs, logs
    one event per step and writes its CIDEr document frequencies once."""
    res = sparsecap("train", "--scst", "--from", str(dense_pair["one"]), "--nproc", "2", "--name", "scst2",
                    "--runs-root", str(runs), "--steps", "4", "--batch-size", "4", "--val-every", "2",
                    "--set", "train.val_images=8", "--set", "train.log_every=1", "--device", "cpu", "-q")
    assert res.returncode == 0, res.stderr[-3000:]
    events = list(read_events(runs / "scst2" / "events.jsonl"))
    assert [e["step"] for e in events if e["kind"] == "train"] == [1, 2, 3, 4]
    assert all(0 <= e["reward"] for e in events if e["kind"] == "train")
    assert (runs / "scst2" / "cider_df.json").is_file()
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "completed"


# ---------------------------------------------------------------------------------------- collectives, in-process ranks
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, dataset: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from sparsecap_engine.config import RunConfig
    from sparsecap_engine.models.registry import build_model
    from sparsecap_engine.recipes.train import validate
    from sparsecap_engine.training import distributed
    from sparsecap_engine.training.setup import fit_encoder, load_splits, resolve_model

    dist = distributed.init_from_env("cpu")
    result: dict[str, object] = {"rank": dist.rank, "world": dist.world}
    cfg = RunConfig()
    cfg.data.dataset, cfg.data.features, cfg.data.image_size = dataset, "auto", 32
    cfg.model.overrides = {"rnn_size": 32, "input_encoding_size": 16, "att_hid_size": 16}
    splits = load_splits(cfg.data, model=resolve_model(cfg.model))
    torch.manual_seed(3)
    model = build_model(fit_encoder(resolve_model(cfg.model), splits), len(splits.vocab))
    metrics, items = validate(model, splits.val, splits.vocab, torch.device("cpu"), 12, 12, batch_size=5)
    result["val"] = [metrics, [i["caption"] for i in items]]
    result["part"] = dist.part(list(range(8)))
    result["any"] = [dist.any(rank == 1), dist.any(False)]
    try:
        dist.check_same({"w": torch.tensor([float(rank)])}, "test tensors")
        result["check_differ"] = "passed"
    except distributed.DistError as exc:
        result["check_differ"] = str(exc)
    dist.check_same({"w": torch.ones(3), "s": torch.tensor(2)}, "equal tensors")

    def fail() -> int:
        raise UsageError("refused on rank 0")

    try:
        dist.on_main(fail)
    except Exception as exc:  # noqa: BLE001 - the test looks at what each rank got
        result["on_main_error"] = f"{exc.__class__.__name__}: {exc}"
    result["on_main_value"] = dist.on_main(lambda: f"made by rank {dist.rank}")
    Path(out, f"rank-{rank}.json").write_text(json.dumps(result))
    distributed.shutdown()


@pytest.mark.slow
def test_collectives_and_sharded_validation(dataset: Path, tmp_path: Path):
    import torch.multiprocessing as mp

    from sparsecap_engine.config import RunConfig
    from sparsecap_engine.models.registry import build_model
    from sparsecap_engine.recipes.train import validate
    from sparsecap_engine.training.setup import fit_encoder, load_splits, resolve_model

    mp.spawn(_worker, args=(_free_port(), str(dataset), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1))

    cfg = RunConfig()
    cfg.data.dataset, cfg.data.features, cfg.data.image_size = str(dataset), "auto", 32
    cfg.model.overrides = {"rnn_size": 32, "input_encoding_size": 16, "att_hid_size": 16}
    splits = load_splits(cfg.data, model=resolve_model(cfg.model))
    torch.manual_seed(3)
    model = build_model(fit_encoder(resolve_model(cfg.model), splits), len(splits.vocab))
    metrics, items = validate(model, splits.val, splits.vocab, torch.device("cpu"), 12, 12, batch_size=5)
    single = [metrics, [i["caption"] for i in items]]
    assert r0["val"] == single and r1["val"] == single  # every rank scores all 12 images, as one process does

    assert (r0["part"], r1["part"]) == ([0, 1, 2, 3], [4, 5, 6, 7])
    assert r0["any"] == r1["any"] == [True, False]
    assert "differ between ranks (rank(s) 1 vs rank 0)" in r0["check_differ"]
    assert r0["check_differ"] == r1["check_differ"]
    assert r0["on_main_error"] == "UsageError: refused on rank 0"
    assert r1["on_main_error"] == "DistError: rank 0: refused on rank 0"
    assert r0["on_main_value"] == r1["on_main_value"] == "made by rank 0"


# ------------------------------------------------------------------------------------------------ launching, bad input
def test_nproc_flag_becomes_torchrun_arguments():
    assert torchrun_argv(["eval", "runs/x", "--nproc", "2"]) is None
    assert torchrun_argv(["train", "--steps", "5"]) is None
    assert torchrun_argv(["train", "--nproc", "2", "--steps", "5"]) == [
        "--standalone", "--nproc-per-node=2", "--monitor-interval=1", "-m", "sparsecap_cli", "train", "--steps", "5"]
    assert torchrun_argv(["prune", "--nproc=3", "-q"])[:2] == ["--standalone", "--nproc-per-node=3"]
    assert torchrun_argv(["train", "--nproc", "1", "-q"]) == ["-m", "sparsecap_cli", "train", "-q"]
    for bad in (["train", "--nproc"], ["train", "--nproc", "two"], ["train", "--nproc", "0"]):
        with pytest.raises(UsageError):
            torchrun_argv(bad)


def _one_line_per_rank(res: subprocess.CompletedProcess, needle: str) -> None:
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2 and all(needle in ln for ln in errors), res.stderr[-2000:]
    assert "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("args", "needle"), [
    (["--batch-size", "5"], "must divide by the 2 processes"),
    (["--set", "train.dist_backend=nccl"], "backend nccl needs CUDA GPUs"),
    (["--device", "cuda"], "CUDA is not available"),
])
def test_bad_launches_fail_on_every_rank_without_a_hang(args: list[str], needle: str, runs: Path, dataset: Path):
    res = sparsecap("train", "--nproc", "2", "--name", "bad", "--runs-root", str(runs), "--dataset", str(dataset),
                    "--steps", "4", "-q", *args, timeout=120)
    assert res.returncode in (1, 2)
    _one_line_per_rank(res, needle)
    assert not (runs / "bad").exists()
