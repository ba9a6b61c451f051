"""Bad input through the real executable: a small fixed subset of ``benchmarks/probe_bad_input.py``'s cases (every
one must come out ``ok``: one red line, exit 1 or 2, nothing written), and the probe's classifier on made-up
outcomes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _script() -> ModuleType:
    path = Path(__file__).parents[1] / "benchmarks" / "probe_bad_input.py"
    spec = importlib.util.spec_from_file_location("probe_bad_input", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


probe = _script()

#: a spread over the commands and the classes of defect the probe found (issue 12): internal errors (a wrong-typed
#: --set value, --device tpu, a decompression bomb), files written before failing (a garbage dataset), nonsense
#: accepted (a NaN checkpoint, --limit -1, --interval nan, a sweep name escaping its root, a swapped vocab.json on
#: resume); each needs only the minimal fixtures
SUBSET = (
    "global/unknown-command",
    "train/lr=nan",
    'train/set-model.rnn_size="big"',
    "train/dataset-garbage",
    "train/resume-steps",
    "train/resume-vocab-swapped",
    "caption/device=tpu",
    "caption/image-header-100000x100000",
    "caption/dense-weights-nan",
    "eval/limit=-1",
    "monitor/interval=nan",
    "sweep/name=../x",
)


@pytest.mark.slow
def test_probe_subset_all_ok(tmp_path: Path):
    cases = {c.id: c for c in probe.all_cases()}
    chosen = [cases[i] for i in SUBSET]
    assert all("runs/pruned" not in " ".join(c.args) and "sparse.safetensors" not in " ".join(c.args) for c in chosen)
    fx = probe.build_fixtures(tmp_path, log=lambda _: None, minimal=True)
    results = probe.probe(chosen, tmp_path, fx, log=lambda _: None)
    bad = [f"{r.id}: {r.cls} ({r.detail})" for r in results if r.cls != "ok"]
    assert not bad, "\n".join(bad)
    assert len(results) == len(SUBSET)


def test_case_list_is_large_unique_and_covers_every_command():
    cases = probe.all_cases()
    assert len(cases) >= 400
    assert len({c.id for c in cases}) == len(cases)
    assert {c.command for c in cases} == set(probe.COMMANDS)
    assert all(c.expect in ("ok", "fail", "any") for c in cases)
    assert sum(c.expect == "ok" for c in cases) >= 20  # valid edge cases must keep working


# ----------------------------------------------------------------------------------------------- the classifier

CASE = probe.Case("train/x", ["train"])
OK_CASE = probe.Case("train/ok-x", ["train"], expect="ok")


def outcome(code: int | None, stderr: str = "", stdout: str = "", **kw) -> probe.Outcome:
    return probe.Outcome(code, stdout, stderr, **kw)


@pytest.mark.parametrize("out, cls", [
    (outcome(1, "error: run not found: x\n"), "ok"),
    (outcome(2, "\x1b[1;31merror:\x1b[0m --steps must be at least 1\n"), "ok"),
    (outcome(2, "Usage: sparsecap train [OPTIONS]\nTry 'sparsecap train --help' for help.\n"
                "╭─ Error ─────╮\n│ Invalid value for '--steps': 'x' is not a valid integer. │\n╰─────────────╯\n"),
     "ok"),
    (outcome(2, "╭─ Error ─────╮\n│ Option '--json' does not take a value. │\n╰─────────────╯\n"), "ok"),
    (outcome(1, "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n"), "traceback"),
    (outcome(1, "internal error: KeyError: 'x' (rerun with --debug for details)\n"), "internal-error"),
    (outcome(1, "warning: something\nerror: run not found: x\n"), "multi-line"),
    (outcome(1, ""), "multi-line"),
    (outcome(0, "", "a caption\n"), "accepted"),
    (outcome(1, "error: bad\n", changed=["+/w/runs/t/"]), "wrote-files"),
    (outcome(3, "error: bad\n"), "exit-code"),
    (outcome(None, "", timed_out=True), "hang"),
    (outcome(-9, ""), "killed"),
    (outcome(1, "internal error: RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried..."), "killed"),
])
def test_classify_fail_cases(out: probe.Outcome, cls: str):
    assert probe.classify(CASE, out)[0] == cls


def test_classify_either_outcome_cases():
    either = probe.Case("monitor/x", ["monitor"], expect="any")
    assert probe.classify(either, outcome(0, "", "a table\n"))[0] == "ok"
    assert probe.classify(either, outcome(1, "error: unreadable plan\n"))[0] == "ok"
    assert probe.classify(either, outcome(1, "internal error: KeyError: 'x'\n"))[0] == "internal-error"


def test_classify_expected_ok_cases():
    assert probe.classify(OK_CASE, outcome(0, "", "fine\n", changed=["+/w/runs/t/"]))[0] == "ok"
    assert probe.classify(OK_CASE, outcome(1, "error: no\n")) == ("refused", "error: no")
    assert probe.classify(OK_CASE, outcome(1, "internal error: ValueError: x\n"))[0] == "internal-error"
    assert probe.classify(OK_CASE, outcome(None, "", timed_out=True))[0] == "hang"


def test_snapshot_diff_sees_new_changed_and_removed_files_but_not_locks(tmp_path: Path):
    (tmp_path / "a").write_text("1")
    (tmp_path / "gone").write_text("1")
    before = probe.snapshot(tmp_path)
    (tmp_path / "a").write_text("22")
    (tmp_path / "gone").unlink()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_text("pid 1")
    changed = probe.diff(before, probe.snapshot(tmp_path))
    assert changed == sorted([f"~{tmp_path}/a", f"-{tmp_path}/gone", f"+{tmp_path}/run/"])


def test_args_substitute_work_and_fixture_folders():
    case = probe.Case("caption/x", ["caption", "$W/img.png", "--run", "$FX/runs/dense", "--set", "a=$FX/b"])
    assert case.argv(Path("/w"), Path("/fx")) == ["caption", "/w/img.png", "--run", "/fx/runs/dense", "--set",
                                                   "a=/fx/b"]
    assert case.line().startswith("sparsecap caption $W/img.png --run $FX/runs/dense")
