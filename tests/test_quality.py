"""Quality bar on the embedded dataset: a trained model beats 'always the most frequent caption' by ≥ 3× CIDEr.

The full default run (2,000 steps) reaches about 9× (README); this shortened run keeps CI time in check.
"""

from __future__ import annotations

import json

import pytest

from tests.test_e2e_cli import sparsecap


@pytest.mark.slow
def test_short_default_run_beats_trivial_baseline_3x(tmp_path):
    res = sparsecap("train", "--runs-root", str(tmp_path), "--name", "q", "--steps", "400", "--val-every", "400",
                    "--quiet")
    assert res.returncode == 0, res.stderr
    res = sparsecap("eval", str(tmp_path / "q"), "--split", "test", "--baseline", "--metrics", "cider", "--json",
                    "--quiet")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    model, baseline = out["scores"]["CIDEr"], out["baseline"]["scores"]["CIDEr"]
    assert model >= 3 * baseline, (model, baseline)
