"""``sparsecap sweep``: planning (grid, budgets, dependencies, commands, configs), resume decisions, result collection,
the orchestration (parallel cells, failures, Ctrl-C, submitit) against a fake ``sparsecap``, and one tiny real sweep
end to end through the executable."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sparsecap_engine.config import RunConfig, load_toml
from sparsecap_engine.errors import UsageError
from sparsecap_engine.recipes import sweep_launch
from sparsecap_engine.recipes.sweep import (
    FORMAT,
    CellState,
    SweepOptions,
    base_config,
    cell_state,
    decide,
    dry_run_lines,
    plan_sweep,
    prepare_folder,
    threads_per_job,
)
from sparsecap_engine.recipes.sweep_results import ROW_KEYS, load_rows, make_row, with_ratios, write_results
from sparsecap_engine.recipes.sweep_run import plan_actions, run_sweep

FAKE = [sys.executable, str(Path(__file__).with_name("sweep_fakes.py"))]
EXE = str(Path(sys.executable).parent / "sparsecap")


def base(steps: int = 600) -> RunConfig:
    cfg = RunConfig()
    cfg.train.steps = steps
    cfg.prune = {"mask_lr": 7.0}
    return cfg


def plan_of(tmp_path: Path, methods=("dense", "supermask", "gradual", "magnitude", "lottery", "snip"),
            sparsity=(0.95, 0.975, 0.9875, 0.991), steps: int = 600, **kw):
    opts = SweepOptions(methods=list(methods), sparsity=list(sparsity), **kw)
    return plan_sweep(base(steps), tmp_path / "sw", opts), opts


# --- planning ---------------------------------------------------------------------------------------------------


def test_default_grid_is_the_papers(tmp_path: Path):
    cfg, grid = base_config()  # the packaged base config and its [sweep] table
    plan = plan_sweep(cfg, tmp_path / "paper", SweepOptions(finetune_steps=grid["finetune_steps"]))
    assert len(plan.cells) == 1 + 5 * 4
    assert plan.cells[0].id == "dense"
    assert [c.id for c in plan.cells[1:5]] == ["supermask-0.95", "supermask-0.975", "supermask-0.9875",
                                               "supermask-0.991"]
    assert {c.method for c in plan.cells} == {"dense", "supermask", "gradual", "magnitude", "lottery", "snip"}
    assert grid["methods"] == list(SweepOptions().methods) and grid["sparsity"] == list(SweepOptions().sparsity)
    assert (cfg.model.preset, cfg.train.steps, cfg.train.batch_size) == ("ud-small", 600, 16)
    assert (cfg.data.features, cfg.optim.lr) == ("auto", 0.006)  # the scenes' region features
    assert (cfg.train.val_every, cfg.train.val_images, cfg.optim.warmup) == (200, 100, 50)
    assert plan.budget == {"dense": 600, "finetune": 200, "prune_train": 800, "lottery_retrain": 800}


@pytest.mark.parametrize("name", ["ud-sweep", "ort-sweep"])
def test_coco_recipes_plan_the_papers_table(tmp_path: Path, name: str):
    cfg, grid = base_config(Path(__file__).parents[1] / "configs" / "coco" / f"{name}.toml")
    plan = plan_sweep(cfg, tmp_path / name, SweepOptions(methods=grid["methods"], sparsity=grid["sparsity"],
                                                         finetune_steps=grid["finetune_steps"]))
    assert len(plan.cells) == 21
    assert cfg.model.preset == ("ud-paper" if name == "ud-sweep" else "ort-paper")
    assert cfg.data.features == "auto" and cfg.train.device == "cuda"
    assert plan.budget == {"dense": 113280, "finetune": 75520, "prune_train": 188800, "lottery_retrain": 188800}


def test_sweep_table_rejects_unknown_keys(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[sweep]\nmethod = ["dense"]\n')
    with pytest.raises(UsageError, match="unknown \\[sweep\\] key 'method'"):
        base_config(bad)


def test_step_budgets_dense_vs_dense_plus_finetune(tmp_path: Path):
    plan, _ = plan_of(tmp_path, sparsity=(0.9,), steps=300, finetune_steps=50)
    steps = {c.method: c.steps for c in plan.cells}
    assert steps == {"dense": 300, "supermask": 350, "gradual": 350, "snip": 350, "magnitude": 50, "lottery": 350}
    for cell in plan.cells:
        assert cell.config["train"]["steps"] == cell.steps
        assert cell.argv[cell.argv.index("--steps") + 1] == str(cell.steps)
    budgets = {c.method: c.budget for c in plan.cells}
    assert budgets["dense"] == "dense 300"
    assert budgets["magnitude"] == "dense 300 + fine-tune 50"
    assert "350" in budgets["supermask"] and "dense 300 + fine-tune 50" in budgets["supermask"]
    assert "retrain 350" in budgets["lottery"]
    default_f, _ = plan_of(tmp_path, methods=("gradual",), sparsity=(0.9,), steps=300)
    assert default_f.finetune_steps == 100 and default_f.cells[0].steps == 400


def test_dependencies_commands_and_dense_as_dependency(tmp_path: Path):
    plan, _ = plan_of(tmp_path, methods=("magnitude", "gradual", "lottery"), sparsity=(0.5,))
    folder = tmp_path / "sw"
    by_id = {c.id: c for c in plan.cells}
    assert list(by_id) == ["dense", "magnitude-0.5", "gradual-0.5", "lottery-0.5"]  # dense planned for magnitude
    assert by_id["magnitude-0.5"].depends == ["dense"] and by_id["lottery-0.5"].depends == ["dense"]
    assert by_id["gradual-0.5"].depends == [] and by_id["dense"].depends == []
    dense = by_id["dense"].argv
    assert dense[:2] == ["sparsecap", "train"] and "--method" not in dense
    for cell in plan.cells:
        argv = cell.argv
        assert argv[argv.index("--config") + 1] == str(folder / "configs" / f"{cell.id}.toml")
        assert argv[argv.index("--name") + 1] == cell.id and cell.run == cell.id
        assert argv[argv.index("--runs-root") + 1] == str(folder) and argv[-1] == "--quiet"
    mag = by_id["magnitude-0.5"].argv
    assert mag[:2] == ["sparsecap", "prune"]
    assert mag[mag.index("--method") + 1] == "magnitude" and mag[mag.index("--sparsity") + 1] == "0.5"
    assert mag[mag.index("--criterion") + 1] == "uniform" and mag[mag.index("--from") + 1] == str(folder / "dense")
    assert "--from" not in by_id["gradual-0.5"].argv and "--criterion" not in by_id["gradual-0.5"].argv
    no_dense, _ = plan_of(tmp_path, methods=("gradual", "snip"), sparsity=(0.5, 0.9))
    assert [c.id for c in no_dense.cells] == ["gradual-0.5", "gradual-0.9", "snip-0.5", "snip-0.9"]


def test_config_per_cell_written_and_plan_json(tmp_path: Path):
    plan, _ = plan_of(tmp_path, methods=("dense", "lottery", "supermask"), sparsity=(0.9,), steps=90)
    prepare_folder(plan)
    folder = tmp_path / "sw"
    for cell in plan.cells:
        cfg = load_toml(folder / "configs" / f"{cell.id}.toml")
        assert cfg.to_dict() == cell.config and cfg.train.steps == cell.steps
    lottery = load_toml(folder / "configs" / "lottery-0.9.toml").prune
    assert lottery == {"mask_lr": 7.0, "method": "lottery", "sparsity": 0.9, "criterion": "uniform",
                       "source": str(folder / "dense")}
    assert load_toml(folder / "configs" / "supermask-0.9.toml").prune == {"mask_lr": 7.0, "method": "supermask",
                                                                          "sparsity": 0.9}
    assert load_toml(folder / "configs" / "dense.toml").prune == {}
    data = json.loads((folder / "plan.json").read_text())
    assert data["format"] == FORMAT and data["name"] == "sw"
    assert set(data) == {"format", "name", "created", "methods", "sparsity", "budget", "base_config", "cells"}
    assert data["budget"] == {"dense": 90, "finetune": 30, "prune_train": 120, "lottery_retrain": 120}
    assert set(data["cells"][0]) == {"id", "method", "sparsity", "run", "steps", "budget", "depends", "argv", "config"}
    assert data["base_config"]["train"]["steps"] == 90


@pytest.mark.parametrize(("kw", "needle"), [
    ({"methods": ["dense", "obd"]}, "unknown sweep method 'obd'"),
    ({"methods": ["gradual"], "sparsity": [1.0]}, "must be in (0, 1)"),
    ({"methods": []}, "--methods is empty"),
    ({"jobs": 0}, "--jobs"),
    ({"launcher": "pbs"}, "unknown launcher"),
    ({"metrics": ["spice"]}, "--metrics"),
])
def test_bad_options_are_usage_errors(tmp_path: Path, kw, needle):
    with pytest.raises(UsageError, match=None) as info:
        plan_sweep(base(), tmp_path / "sw", SweepOptions(**kw))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_finetune_steps_must_be_positive(tmp_path: Path):
    with pytest.raises(UsageError, match="fine-tune steps"):
        plan_sweep(base(2), tmp_path / "sw", SweepOptions(methods=["gradual"], sparsity=[0.5]))


def test_changed_plan_refused_unless_overwrite(tmp_path: Path):
    plan, _ = plan_of(tmp_path, methods=("gradual",), sparsity=(0.5,))
    prepare_folder(plan)
    created = json.loads((tmp_path / "sw" / "plan.json").read_text())["created"]
    again, _ = plan_of(tmp_path, methods=("gradual",), sparsity=(0.5,))
    again.created = created + 100
    prepare_folder(again)  # the same grid: accepted, plan rewritten identically
    assert json.loads((tmp_path / "sw" / "plan.json").read_text())["created"] == created
    for changed in (plan_of(tmp_path, methods=("gradual",), sparsity=(0.5, 0.9))[0],
                    plan_of(tmp_path, methods=("gradual",), sparsity=(0.5,), steps=900)[0]):
        with pytest.raises(UsageError, match="--overwrite"):
            prepare_folder(changed)
    prepare_folder(changed, overwrite=True)
    assert json.loads((tmp_path / "sw" / "plan.json").read_text())["budget"]["dense"] == 900
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a sweep folder"):
        prepare_folder(plan_sweep(base(), tmp_path / "other", SweepOptions(methods=["gradual"])))


def test_dry_run_lines_are_shell_commands_with_threads(tmp_path: Path):
    opts = SweepOptions(methods=["magnitude"], sparsity=[0.9])
    plan = plan_sweep(base(), tmp_path / "my sweep", opts)
    lines = dry_run_lines(plan, 3)
    assert len(lines) == 2
    for line, cell in zip(lines, plan.cells, strict=True):
        words = shlex.split(line)
        assert words[:2] == ["OMP_NUM_THREADS=3", "MKL_NUM_THREADS=3"]
        assert words[2:] == [*cell.argv, "--set", "train.num_threads=3"]
    assert threads_per_job(1, cpus=2) == 2 and threads_per_job(2, cpus=2) == 1 and threads_per_job(4, cpus=2) == 1
    assert threads_per_job(3, cpus=16) == 5


# --- resume / skip ----------------------------------------------------------------------------------------------


def test_decide_which_cells_rerun_and_how(tmp_path: Path):
    plan, _ = plan_of(tmp_path, methods=("dense", "gradual", "lottery"), sparsity=(0.5,))
    dense, grad, lottery = plan.cells
    folder = str(tmp_path / "sw")
    assert decide(dense, CellState("completed", True, "completed", True, True)).kind == "skip"
    assert decide(grad, CellState("target-missed", True, "target-missed", False, True)).kind == "skip"
    fresh = decide(grad, CellState(None, False))
    assert fresh.kind == "run" and fresh.argv == grad.argv
    gone = decide(grad, CellState("completed", False))  # the row says done but the run directory was deleted
    assert gone.kind == "run"
    resume = decide(dense, CellState("interrupted", True, "interrupted", True, True))
    assert resume.kind == "resume"
    assert resume.argv == ["sparsecap", "train", "--name", "dense", "--runs-root", folder, "--resume", "--quiet"]
    assert decide(dense, CellState(None, True, None, False, False)).argv == [*dense.argv, "--overwrite"]
    pruned = decide(grad, CellState("failed", True, None, True, False))  # prune cells resume too
    assert pruned.argv == ["sparsecap", "prune", "--name", "gradual-0.5", "--runs-root", folder, "--resume", "--quiet"]
    restart = decide(lottery, CellState("failed", True, None, True, False))  # rounds: no resume
    assert restart.kind == "restart" and restart.argv == [*lottery.argv, "--overwrite"]
    assert decide(grad, CellState("failed", True, None, False, False)).kind == "restart"  # no trainer state
    measured = decide(grad, CellState("failed", True, "completed", False, True))  # ran, measuring failed
    assert measured.kind == "measure" and measured.argv is None
    assert decide(grad, CellState(None, True, "completed", False, False)).kind == "restart"  # no sparsity.json
    over = decide(dense, CellState("completed", True, "completed", True, True), overwrite=True)
    assert over.kind == "run" and over.argv[-1] == "--overwrite"


def test_cell_state_reads_rows_and_run_directories(tmp_path: Path):
    plan, _ = plan_of(tmp_path, methods=("dense", "gradual"), sparsity=(0.5,))
    folder = tmp_path / "sw"
    run = folder / "dense"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.state.pt").write_bytes(b"x")
    (run / "events.jsonl").write_text(json.dumps({"kind": "run_end", "status": "interrupted", "time": 1, "step": 5})
                                      + "\n")
    rows = {"gradual-0.5": {"status": "completed"}}
    assert cell_state(folder, plan.cells[0], rows) == CellState(None, True, "interrupted", True, False)
    assert cell_state(folder, plan.cells[1], rows) == CellState("completed", False, None, False, False)
    actions = plan_actions(plan)
    assert actions["dense"].kind == "resume" and actions["gradual-0.5"].kind == "run"


# --- result collection ------------------------------------------------------------------------------------------


def _measure(cider: float, latency: float, size: int = 1000) -> dict:
    return {"scores": {"CIDEr": cider, "Bleu_4": 0.2, "METEOR": None, "ROUGE_L": 0.5}, "size_bytes": size,
            "latency_ms": latency, "prunable": {"numel": 400, "nnz": 400}}


def test_rows_csv_md_and_latency_vs_dense(tmp_path: Path):
    plan, _ = plan_of(tmp_path, methods=("dense", "gradual"), sparsity=(0.5, 0.9), steps=60)
    prepare_folder(plan)
    dense, g5, g9 = plan.cells
    for cell, s in ((g5, 0.5), (g9, 0.9)):
        run = tmp_path / "sw" / cell.run
        run.mkdir()
        (run / "sparsity.json").write_text(json.dumps({"tensors": {
            "a.weight": {"sparsity": s, "pruned": True}, "b.weight": {"sparsity": s / 2, "pruned": True}},
            "pruned": {"numel": 400, "nnz": int(400 * (1 - s)), "sparsity": s}}))
    rows = {
        "dense": make_row(dense, "completed", 12.345, _measure(0.8, 20.0), None),
        "gradual-0.5": make_row(g5, "completed", 30.0, {**_measure(0.7, 10.0), "output_words": {
            "layer": "decoder.logit.weight", "words": 30, "emit": 27}}, {"pruned": {"sparsity": 0.5, "nnz": 200,
                                                                                   "numel": 400}}),
        "gradual-0.9": make_row(g9, "failed", 3.0, None, None),
    }
    assert rows["dense"]["sparsity"] == 0.0 and rows["dense"]["nnz"] == rows["dense"]["numel"] == 400
    assert rows["gradual-0.5"]["nnz"] == 200 and rows["gradual-0.5"]["CIDEr"] == 0.7
    assert rows["gradual-0.5"]["METEOR"] is None and rows["dense"]["wall_s"] == 12.35
    assert rows["gradual-0.9"]["CIDEr"] is None and rows["gradual-0.9"]["status"] == "failed"
    assert rows["gradual-0.5"]["output_words"] == 27 and rows["dense"]["output_words"] is None  # not measured
    table = with_ratios(list(rows.values()))
    assert [r["latency_vs_dense"] for r in table] == [1.0, 0.5, None]
    assert with_ratios([rows["gradual-0.5"]])[0]["latency_vs_dense"] is None  # no dense, no ratio
    paths = write_results(plan, rows, {"gradual-0.9": "error: boom"})
    folder = tmp_path / "sw"
    data = json.loads((folder / "results.json").read_text())
    assert [r["cell"] for r in data["cells"]] == ["dense", "gradual-0.5", "gradual-0.9"]
    assert data["dense"]["cell"] == "dense" and data["cells"][1]["latency_vs_dense"] == 0.5
    assert all(list(r) == list(ROW_KEYS) for r in data["cells"])
    csv_lines = (folder / "results.csv").read_text().splitlines()
    assert csv_lines[0] == ",".join(ROW_KEYS) and len(csv_lines) == 4
    md = (folder / "results.md").read_text()
    assert "| gradual-0.5 | gradual | train with pruning 80 (= dense 60 + fine-tune 20) | 50.00% |" in md
    assert "0.700" in md and "error: boom" in md and "dense** 60 steps" in md
    assert "| words |" in md and "| 27 |" in md
    for name in ("cider_vs_sparsity", "size_vs_cider", "layer_sparsity_gradual"):
        assert paths[name].is_file() and paths[name].read_bytes()[:4] == b"\x89PNG"
    assert load_rows(folder)["gradual-0.5"]["CIDEr"] == 0.7


# --- orchestration against a fake sparsecap ---------------------------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    for var in ("FAKE_FAIL", "FAKE_MISS", "FAKE_UNREACHED", "FAKE_HANG", "FAKE_FAIL_MEASURE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return calls


def calls_of(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = [json.loads(line) for line in path.read_text().splitlines()]
    path.unlink()
    return out


def events_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def fake_sweep(tmp_path: Path, methods, sparsity, jobs: int = 1, launcher: str = "local", progress=None):
    opts = SweepOptions(methods=list(methods), sparsity=list(sparsity), jobs=jobs, launcher=launcher,
                        executable=FAKE)
    plan = plan_sweep(base(30), Path("sw"), opts)
    kwargs = {"progress": progress} if progress else {}
    return run_sweep(plan, opts, **kwargs), plan


def test_sweep_runs_cells_in_parallel_after_their_dependency_then_skips_them(tmp_path: Path, fake: Path):
    seen: list[tuple] = []
    result, plan = fake_sweep(tmp_path, ("magnitude", "gradual"), (0.5, 0.8), jobs=2,
                              progress=lambda task, done, total, **info: seen.append((task, done, total)))
    assert result.status == "completed" and result.failed == []
    assert [r["status"] for r in result.rows] == ["completed"] * 5
    calls = calls_of(fake)
    k = str(threads_per_job(2))
    train = [c for c in calls if c["argv"][0] in ("train", "prune")]
    assert len(train) == 5 and all(c["omp"] == k and c["mkl"] == k for c in calls)
    assert all(c["argv"][-2:] == ["--set", f"train.num_threads={k}"] for c in train)
    log = events_of(tmp_path / "sw")
    at = {(e["kind"], e.get("cell")): i for i, e in enumerate(log)}
    for cell in ("magnitude-0.5", "magnitude-0.8"):  # waits for dense to end
        assert at[("cell_start", cell)] > at[("cell_end", "dense")]
    assert at[("cell_start", "gradual-0.5")] < at[("cell_end", "dense")]  # runs beside dense (--jobs 2)
    assert sum(c["argv"][0] == "sweep-measure" for c in calls) == 5
    kinds = [e["kind"] for e in events_of(tmp_path / "sw")]
    assert kinds[0] == "sweep_start" and kinds[-1] == "sweep_end"
    assert kinds.count("cell_start") == 5 and kinds.count("cell_end") == 5
    end = events_of(tmp_path / "sw")[-1]
    assert (end["status"], end["done"], end["failed"], end["step"]) == ("completed", 5, 0, 0)
    rows = {r["cell"]: r for r in json.loads((tmp_path / "sw" / "results.json").read_text())["cells"]}
    assert rows["magnitude-0.8"]["latency_vs_dense"] == pytest.approx((10 * 0.2 + 1) / 11, abs=1e-3)
    assert rows["gradual-0.5"]["sparsity"] == pytest.approx(0.5, abs=0.01) and rows["dense"]["sparsity"] == 0.0
    assert seen[0] == ("sweep", 0, 5) and seen[-1] == ("sweep", 5, 5)
    assert (tmp_path / "sw" / "plots" / "layer_sparsity.png").is_file()

    again, _ = fake_sweep(tmp_path, ("magnitude", "gradual"), (0.5, 0.8), jobs=2)
    assert again.status == "completed" and again.ran == [] and calls_of(fake) == []
    kinds = [e["kind"] for e in events_of(tmp_path / "sw")]
    assert kinds.count("cell_start") == 5 and kinds[-2:] == ["sweep_start", "sweep_end"]


def test_failing_cell_does_not_stop_the_others_and_is_retried(tmp_path: Path, fake: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_FAIL", "gradual-0.5")
    monkeypatch.setenv("FAKE_MISS", "gradual-0.8")
    monkeypatch.setenv("FAKE_UNREACHED", "gradual-0.9")
    result, _ = fake_sweep(tmp_path, ("dense", "gradual"), (0.5, 0.8, 0.9))
    status = {r["cell"]: r["status"] for r in result.rows}
    assert status == {"dense": "completed", "gradual-0.5": "failed", "gradual-0.8": "target-missed",
                      "gradual-0.9": "target-missed"}
    assert result.status == "failed" and result.failed == ["gradual-0.5"]
    assert result.messages["gradual-0.5"] == "error: boom gradual-0.5"
    assert "missed" in result.messages["gradual-0.8"]
    assert result.messages["gradual-0.9"] == "target sparsity 90.00% not reached (final 45.00%)"
    missed = next(r for r in result.rows if r["cell"] == "gradual-0.8")
    assert missed["CIDEr"] is not None  # a missed target is still measured
    end = [e for e in events_of(tmp_path / "sw") if e["kind"] == "cell_end"]
    assert {e["cell"]: e["status"] for e in end}["gradual-0.5"] == "failed"
    assert events_of(tmp_path / "sw")[-1]["failed"] == 1
    calls_of(fake)

    monkeypatch.delenv("FAKE_FAIL")
    again, _ = fake_sweep(tmp_path, ("dense", "gradual"), (0.5, 0.8, 0.9))
    assert again.status == "completed" and again.ran == ["gradual-0.5"]
    assert [c["argv"][0] for c in calls_of(fake)] == ["prune", "sweep-measure"]


def test_failed_dense_skips_its_dependents(tmp_path: Path, fake: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_FAIL", "dense")
    result, _ = fake_sweep(tmp_path, ("magnitude", "snip"), (0.5,), jobs=2)
    status = {r["cell"]: r["status"] for r in result.rows}
    assert status == {"dense": "failed", "magnitude-0.5": "skipped", "snip-0.5": "completed"}
    skipped = [e for e in events_of(tmp_path / "sw") if e["kind"] == "cell_end" and e["status"] == "skipped"]
    assert skipped[0]["message"] == "dependency dense failed"
    ran = {c["argv"][c["argv"].index("--name") + 1] for c in calls_of(fake) if "--name" in c["argv"]}
    assert ran == {"dense", "snip-0.5"}


def test_failed_measure_is_a_failed_cell_then_only_measured(tmp_path: Path, fake: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_FAIL_MEASURE", "snip-0.5")
    result, _ = fake_sweep(tmp_path, ("snip",), (0.5,))
    assert result.rows[0]["status"] == "failed" and result.messages["snip-0.5"] == "measure: error: measure boom"
    calls_of(fake)
    monkeypatch.delenv("FAKE_FAIL_MEASURE")
    again, _ = fake_sweep(tmp_path, ("snip",), (0.5,))
    assert again.rows[0]["status"] == "completed"
    assert [c["argv"][0] for c in calls_of(fake)] == ["sweep-measure"]


def test_ctrl_c_interrupts_running_cells_and_rerun_resumes(tmp_path: Path, fake: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_HANG", "dense,gradual-0.5")
    monkeypatch.setattr(sweep_launch, "INTERRUPT_GRACE_S", 10.0)
    # Python's own Ctrl-C handler (an earlier test in the session may have left another one installed), then a real
    # SIGINT, which also breaks blocking waits
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        result, _ = fake_sweep(tmp_path, ("dense", "gradual"), (0.5,), jobs=2)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - t0 < 15
    assert result.status == "interrupted"
    assert {r["cell"]: r["status"] for r in result.rows} == {"dense": "interrupted", "gradual-0.5": "interrupted"}
    events = events_of(tmp_path / "sw")
    assert events[-1]["kind"] == "sweep_end" and events[-1]["status"] == "interrupted"
    for run in ("dense", "gradual-0.5"):  # the children got SIGINT and ended their runs cleanly
        run_events = [json.loads(x) for x in (tmp_path / "sw" / run / "events.jsonl").read_text().splitlines()]
        assert run_events[-1]["kind"] == "run_end" and run_events[-1]["status"] == "interrupted"
    assert not [c for c in calls_of(fake) if c["argv"][0] == "sweep-measure"]

    monkeypatch.delenv("FAKE_HANG")
    again, _ = fake_sweep(tmp_path, ("dense", "gradual"), (0.5,), jobs=2)
    assert again.status == "completed"
    argv = {c["argv"][c["argv"].index("--name") + 1]: c["argv"] for c in calls_of(fake) if "--name" in c["argv"]}
    assert "--resume" in argv["dense"] and "--overwrite" not in argv["dense"]
    assert "--resume" in argv["gradual-0.5"] and "--overwrite" not in argv["gradual-0.5"]  # prune resumes too


def test_changed_grid_is_refused_and_overwrite_reruns_all(tmp_path: Path, fake: Path):
    fake_sweep(tmp_path, ("snip",), (0.5,))
    with pytest.raises(UsageError, match="different cells"):
        fake_sweep(tmp_path, ("snip",), (0.5, 0.9))
    calls_of(fake)
    opts = SweepOptions(methods=["snip"], sparsity=[0.5, 0.9], overwrite=True, executable=FAKE)
    result = run_sweep(plan_sweep(base(30), Path("sw"), opts), opts)
    assert result.status == "completed" and len(result.rows) == 2
    argv = {c["argv"][c["argv"].index("--name") + 1]: c["argv"] for c in calls_of(fake) if "--name" in c["argv"]}
    assert "--overwrite" in argv["snip-0.5"] and "--overwrite" not in argv["snip-0.9"]


def test_one_sweep_process_per_folder(tmp_path: Path, fake: Path):
    from sparsecap_engine.errors import RunError
    from sparsecap_engine.recipes.sweep_run import folder_lock

    with folder_lock(tmp_path / "sw"), pytest.raises(RunError, match="already in use by"):
        fake_sweep(tmp_path, ("snip",), (0.5,))
    result, _ = fake_sweep(tmp_path, ("snip",), (0.5,))  # the lock is gone with its holder
    assert result.status == "completed"


def test_submitit_local_launcher_runs_the_same_cells(tmp_path: Path, fake: Path):
    pytest.importorskip("submitit")
    result, _ = fake_sweep(tmp_path, ("magnitude",), (0.5,), jobs=2, launcher="submitit-local")
    assert result.status == "completed", result.messages
    assert [r["status"] for r in result.rows] == ["completed", "completed"]
    assert any((tmp_path / "sw" / "slurm").iterdir())  # submitit's job folder
    names = [c["argv"][c["argv"].index("--name") + 1] for c in calls_of(fake) if "--name" in c["argv"]]
    assert names == ["dense", "magnitude-0.5"]


# --- through the executable -------------------------------------------------------------------------------------


def sparsecap(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def test_cli_dry_run_prints_commands_and_runs_nothing(tmp_path: Path):
    res = sparsecap("sweep", "--dry-run", "--sweeps-root", str(tmp_path), "--name", "p", "--methods",
                    "magnitude,lottery", "--sparsity", "0.9,0.99", "--jobs", "2", "--steps", "90")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 5
    k = threads_per_job(2)
    words = shlex.split(lines[0])
    assert words[:4] == [f"OMP_NUM_THREADS={k}", f"MKL_NUM_THREADS={k}", "sparsecap", "train"]
    assert "--steps" in words and words[words.index("--steps") + 1] == "90"
    assert "lottery-0.99" in lines[-1] and "--from" in lines[-1] and "--steps 120" in lines[-1]
    folder = tmp_path / "p"
    assert (folder / "plan.json").is_file() and (folder / "configs" / "lottery-0.99.toml").is_file()
    assert not (folder / "dense").exists() and not (folder / "events.jsonl").exists()


def test_cli_unknown_method_is_one_red_line(tmp_path: Path):
    res = sparsecap("sweep", "--methods", "dense,obd", "--sweeps-root", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error:") and "obd" in res.stderr and len(res.stderr.splitlines()) == 1


@pytest.mark.slow
def test_tiny_sweep_end_to_end_then_rerun_skips(tmp_path: Path):
    from sparsecap_engine.data.synthetic import generate_synthetic

    dataset = generate_synthetic(tmp_path / "data", images=60, size=32, seed=3)
    args = ["sweep", "--name", "tiny", "--sweeps-root", str(tmp_path / "sweeps"), "--methods", "magnitude,gradual",
            "--sparsity", "0.5,0.8", "--steps", "20", "--finetune-steps", "10", "--jobs", "2", "--quiet",
            "--metrics", "bleu,rouge,cider",  # METEOR's Java start-up alone is ~10 s per cell
            "--set", f"data.dataset={dataset}", "--set", "data.image_size=32", "--set", "train.batch_size=4",
            "--set", "train.val_every=10", "--set", "train.val_images=6", "--set", "model.rnn_size=48",
            "--set", "model.input_encoding_size=24", "--set", "model.att_hid_size=24",
            "--set", 'model.encoder_args={"channels": [8, 16]}']
    res = sparsecap(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    folder = tmp_path / "sweeps" / "tiny"
    cells = ["dense", "magnitude-0.5", "magnitude-0.8", "gradual-0.5", "gradual-0.8"]
    for cell in cells:
        assert (folder / cell / "config.toml").is_file() and (folder / cell / "events.jsonl").is_file(), cell
        assert (folder / cell / "export" / "model-fp16.safetensors").is_file(), cell
    for name in ("results.json", "results.csv", "results.md", "plan.json", "plots/cider_vs_sparsity.png",
                 "plots/size_vs_cider.png", "plots/layer_sparsity_magnitude.png", "plots/layer_sparsity_gradual.png"):
        assert (folder / name).is_file(), name
    rows = json.loads((folder / "results.json").read_text())["cells"]
    assert [r["cell"] for r in rows] == cells
    for r in rows:
        assert r["status"] == "completed", r
        for key in ("CIDEr", "Bleu_4", "ROUGE_L", "size_bytes", "latency_ms", "latency_vs_dense", "wall_s", "nnz"):
            assert isinstance(r[key], (int, float)), (r["cell"], key)
    by = {r["cell"]: r for r in rows}
    assert by["dense"]["latency_vs_dense"] == 1.0 and by["dense"]["sparsity"] == 0.0
    assert by["magnitude-0.8"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert by["magnitude-0.8"]["nnz"] < by["magnitude-0.5"]["nnz"] < by["dense"]["nnz"]
    assert by["magnitude-0.8"]["size_bytes"] < by["dense"]["size_bytes"]
    vocab = json.loads((folder / "dense" / "vocab.json").read_text())
    assert by["dense"]["output_words"] == len(vocab["itos"])
    assert 0 < by["magnitude-0.8"]["output_words"] <= by["dense"]["output_words"]
    assert "dense 20 + fine-tune 10" in (folder / "results.md").read_text()

    starts = sum(e["kind"] == "cell_start" for e in events_of(folder))
    t0 = time.monotonic()
    again = sparsecap(*args, "--json")
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - t0 < 20
    assert sum(e["kind"] == "cell_start" for e in events_of(folder)) == starts == 5
    assert [r["cell"] for r in json.loads(again.stdout)] == cells


def test_paper_table_bolds_the_best_completed_cell_and_marks_misses():
    from sparsecap_engine.recipes.sweep_results import paper_table

    rows = [{"method": "dense", "target": 0.0, "CIDEr": 0.5, "status": "completed", "nnz": 100},
            {"method": "supermask", "target": 0.95, "CIDEr": 0.49, "status": "completed", "nnz": 5},
            {"method": "gradual", "target": 0.95, "CIDEr": 0.3, "status": "completed", "nnz": 5},
            {"method": "supermask", "target": 0.99, "CIDEr": 0.6, "status": "target-missed", "nnz": 1},
            {"method": "gradual", "target": 0.99, "CIDEr": 0.2, "status": "completed", "nnz": 1}]
    lines = paper_table(rows)
    assert lines[0] == "Test CIDEr (dense baseline 0.500):"
    assert lines[2] == "| sparsity | NNZ | supermask | gradual |"
    assert lines[4] == "| 95.00% | 5 | **0.490** | 0.300 |"
    assert lines[5] == "| 99.00% | 1 | 0.600 (target-missed) | **0.200** |"  # a missed target never wins


def test_caption_diversity_flags_generic_cells(tmp_path: Path):
    from sparsecap_engine.recipes.sweep_measure import caption_diversity
    from sparsecap_engine.recipes.sweep_results import generic, paper_table

    caps = tmp_path / "captions.json"
    caps.write_text(json.dumps([{"image_id": i, "caption": "a red ball" if i < 6 else f"cap {i}"} for i in range(10)]))
    assert caption_diversity(caps) == {"distinct": 5, "top_share": 0.6}
    assert caption_diversity(tmp_path / "missing.json") is None
    assert generic({"top_caption_share": 0.6}) and not generic({"top_caption_share": 0.2}) and not generic({})
    rows = [{"method": "dense", "target": 0.0, "CIDEr": 0.5, "status": "completed", "nnz": 9, "top_caption_share": 0.1},
            {"method": "supermask", "target": 0.9, "CIDEr": 0.4, "status": "completed", "nnz": 1,
             "top_caption_share": 1.0}]
    lines = paper_table(rows)
    assert lines[4] == "| 90.00% | 1 | **0.400†** |" and lines[-1].startswith("† one caption")
