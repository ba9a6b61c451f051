"""One short end-to-end run per model family through the ``sparsecap`` executable (tiny sizes, a few dozen steps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparsecap_engine.data.synthetic import generate_synthetic

EXE = str(Path(sys.executable).parent / "sparsecap")
TINY = ["--set", "model.d_model=32", "--set", "model.dim_feedforward=64", "--set", "model.num_heads=2",
        "--set", "model.num_layers=2"]
PIXELS = ["--set", "data.image_size=32", "--set", 'model.encoder_args={"channels": [8, 16]}']
FAMILIES = {
    "transformer": ["--model", "transformer", *TINY, *PIXELS],
    "ort": ["--model", "ort", *TINY, *PIXELS],
    # ACORT on the synthetic dataset's region features and real object boxes: radix output, kv + layer sharing
    "acort": ["--model", "ort", "--preset", "acort-cpu", *TINY, "--features", "auto", "--tokenizer", "radix",
              "--radix-base", "6", "--set", "data.max_len=30", "--set", "model.share_layers=[0, 0, 1, 1]"],
}


def sparsecap(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("zoo") / "data", images=60, size=32, seed=4)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_trains_captions_and_inspects(family: str, dataset: Path, tmp_path: Path):
    res = sparsecap("train", "--dataset", str(dataset), "--runs-root", str(tmp_path), "--name", family, "--quiet",
                    "--steps", "30", "--batch-size", "8", "--val-every", "15", "--set", "train.val_images=6",
                    *FAMILIES[family])
    assert res.returncode == 0, res.stderr
    run = tmp_path / family
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in events if e["kind"] == "train"]
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "completed"
    assert losses[-1] < losses[0]
    params = json.loads((run / "model_params.json").read_text())
    assert params["total"] == events[0]["params"] and any(k.startswith("decoder.") for k in params["modules"])

    res = sparsecap("inspect", str(run), "--params", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["parameters"] == params["total"] and info["breakdown"] == params["modules"]

    image = next((dataset.parent / "images").glob("*.png"))
    res = sparsecap("caption", str(image), "--run", str(run), "--json")
    if family == "acort":
        vocab = json.loads((run / "vocab.json").read_text())
        assert vocab["format"] == "sparsecap-radix-1" and info["vocab_size"] == 9
        assert info["encoder"] == "regions" and events[0]["model"]["share_att"] == "kv"
        # the synthetic scenes' regions: caption finds the objects of the PNG and computes their features itself
        assert res.returncode == 0, res.stderr
        assert isinstance(json.loads(res.stdout)[0]["caption"], str)
        res = sparsecap("eval", str(run), "--split", "val", "--metrics", "bleu", "--json")
        assert res.returncode == 0, res.stderr
        assert isinstance(json.loads(res.stdout)["scores"]["Bleu_4"], float)
    else:
        assert res.returncode == 0, res.stderr
        assert isinstance(json.loads(res.stdout)[0]["caption"], str)
