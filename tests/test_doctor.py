"""``run_checks`` on this machine, its never-raise and timeout guarantees, and the ``sparsecap doctor`` command."""

from __future__ import annotations

import json
import time

import typer
from typer.testing import CliRunner

from sparsecap_cli.commands.doctor import doctor
from sparsecap_engine.metrics import coco
from sparsecap_engine.metrics import doctor as checks_module
from sparsecap_engine.metrics.doctor import Check, required_ok, run_check, run_checks

NAMES = ["Java", "PTB tokenizer", "METEOR", "SPICE", "CUDA", "torch"]


def meteor_result(score: float | None) -> coco.EvalResult:
    unavailable = {} if score is not None else {"METEOR": "METEOR (Java) failed twice: out of memory"}
    return coco.EvalResult({"METEOR": score}, {0: {"METEOR": score} if score is not None else {}}, unavailable)


def test_real_checks_pass_for_the_evaluation_toolchain(monkeypatch) -> None:
    # METEOR's JVM takes seconds to load; its real runs are in test_metrics_coco, here only the check's logic
    monkeypatch.setattr(coco, "evaluate_captions", lambda refs, hyps, metrics: meteor_result(0.8909))
    checks = {c.name: c for c in run_checks()}
    assert list(checks) == NAMES
    assert checks["Java"].ok and "version" in checks["Java"].detail
    assert checks["PTB tokenizer"].ok and checks["PTB tokenizer"].detail.endswith("'a man riding a horse'")
    assert checks["METEOR"] == Check("METEOR", True, "METEOR 1.5 scored one pair: 0.8909")
    assert checks["torch"].ok and checks["torch"].detail.startswith("torch 2.")
    assert checks["SPICE"].ok == (coco.spice_missing() is None)
    if not checks["SPICE"].ok:
        assert checks["SPICE"].detail == coco.SPICE_MISSING
    if not checks["CUDA"].ok:
        assert checks["CUDA"].detail == "not available (CPU only)"
    assert required_ok(list(checks.values()))
    assert all("\n" not in c.detail for c in checks.values())


def test_meteor_check_fails_with_the_reason(monkeypatch) -> None:
    monkeypatch.setattr(coco, "evaluate_captions", lambda refs, hyps, metrics: meteor_result(None))
    check = run_check("METEOR", dict(checks_module.CHECKS)["METEOR"])
    assert check == Check("METEOR", False, "METEOR (Java) failed twice: out of memory")
    assert not required_ok([check])


def test_without_java_the_required_checks_fail_fast(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    start = time.perf_counter()
    checks = {c.name: c for c in run_checks()}
    assert time.perf_counter() - start < 30
    assert not checks["Java"].ok and "not found on PATH" in checks["Java"].detail
    assert not checks["PTB tokenizer"].ok and not checks["METEOR"].ok
    assert not required_ok(list(checks.values()))


def test_a_check_never_raises_and_times_out() -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("first line\nsecond line")

    def slow() -> tuple[bool, str]:
        time.sleep(5)
        return True, "late"

    assert run_check("broken", broken) == Check("broken", False, "first line")
    assert run_check("slow", slow, timeout=0.1) == Check("slow", False, "timed out after 0.1 s")
    assert run_check("empty", lambda: 1 / 0) == Check("empty", False, "division by zero")


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(doctor)
    app.command("noop")(lambda: None)  # two commands, so ``doctor`` stays a subcommand
    return app


def test_doctor_command_table_json_and_exit_codes(monkeypatch) -> None:
    good = [Check(n, n != "SPICE", f"detail of {n}") for n in NAMES]
    monkeypatch.setattr(checks_module, "run_checks", lambda: good)
    out = CliRunner().invoke(cli(), ["doctor"])
    assert out.exit_code == 0, out.output
    assert "✔" in out.output and "✘" in out.output and "detail of METEOR" in out.output
    out = CliRunner().invoke(cli(), ["doctor", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)[2] == {
        "name": "METEOR",
        "ok": True,
        "detail": "detail of METEOR",
    }

    bad = [Check(n, n != "METEOR", "[red]not markup[/red]") for n in NAMES]
    monkeypatch.setattr(checks_module, "run_checks", lambda: bad)
    out = CliRunner().invoke(cli(), ["doctor"])
    assert out.exit_code == 1 and "[red]not markup[/red]" in out.output
    assert CliRunner().invoke(cli(), ["doctor", "--json"]).exit_code == 1
