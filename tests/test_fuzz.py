"""Every loader a user can point at a file, fed mutated files (a fast subset of ``benchmarks/fuzz_loaders.py``):
only the project's own errors come out, never an exception of another class."""

from __future__ import annotations

from pathlib import Path

from tests.fuzz.loaders import make_targets, run


def test_loaders_raise_only_project_errors(tmp_path: Path):
    report = run(make_targets(tmp_path), n=150, seed=1, work=tmp_path)
    assert not report.failures, report.failures
    names = {t for t, _ in report.counts}
    assert names == {"dense-checkpoint", "sparse-checkpoint", "masks", "events", "karpathy-json", "config-toml",
                     "image"}
    for name in names:  # the mutations reach both outcomes: they are not all rejected at the door
        assert report.counts[(name, "ok")] + report.counts[(name, "error")] == 150
        assert report.counts[(name, "ok")] > 0 and (name == "events" or report.counts[(name, "error")] > 0), name
