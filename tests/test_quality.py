"""Quality bar on the embedded dataset: a trained model beats 'always the most frequent caption' by ≥ 3× CIDEr.

The main job's path (the scenes' region features, ``--features auto``) for 250 steps: measured 0.562 against the
baseline's 0.107 (5.2×). Rendering the 5,000 scenes and their features into the test's fresh cache is part of its
~100 s; the pixel path needs 400 steps (~180 s) for a similar margin.
"""

from __future__ import annotations

import json

import pytest

from tests.test_e2e_cli import sparsecap


@pytest.mark.slow
def test_short_run_on_the_main_jobs_path_beats_trivial_baseline_3x(tmp_path):
    res = sparsecap("train", "--runs-root", str(tmp_path), "--name", "q", "--steps", "250", "--val-every", "250",
                    "--features", "auto", "--quiet")
    assert res.returncode == 0, res.stderr
    res = sparsecap("eval", str(tmp_path / "q"), "--split", "test", "--baseline", "--metrics", "cider", "--json",
                    "--quiet")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    model, baseline = out["scores"]["CIDEr"], out["baseline"]["scores"]["CIDEr"]
    assert model >= 3 * baseline, (model, baseline)
