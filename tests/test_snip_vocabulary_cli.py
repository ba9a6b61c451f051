"""SNIP on a Karpathy dataset with a large vocabulary, through the executable: the output rows of the words its
saliency batch never shows are pruned away, `prune` says so in a warning line, and `inspect` counts what is left."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.test_human_output import sparsecap

WORDS = 400  # a vocabulary far larger than one saliency batch can show


def _dataset(root: Path) -> tuple[Path, Path]:
    """A Karpathy-style JSON: 48 images × 5 captions of Zipf-distributed words (every word used at least twice across
    the train split), and one ``<cocoid>.npy`` of 4 regions × 8 features per image."""
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, WORDS + 1)
    p /= p.sum()
    words = [f"w{i}" for i in range(WORDS)]
    sentences = [[words[j] for j in rng.choice(WORDS, size=rng.integers(5, 9), p=p)] for _ in range(48 * 5)]
    for j in range(WORDS):  # every word in the vocabulary (min count 1) and in the train split
        sentences[j % 200].append(words[j])
    (root / "att").mkdir(parents=True)
    images = []
    for i in range(48):
        split = "train" if i < 40 else "val" if i < 44 else "test"
        sents = [{"tokens": s, "raw": " ".join(s)} for s in sentences[5 * i : 5 * i + 5]]
        images.append({"filename": f"{i}.jpg", "filepath": "x", "cocoid": i, "imgid": i, "split": split,
                       "sentences": sents})
        np.save(root / "att" / f"{i}.npy", rng.normal(size=(4, 8)).astype(np.float32))
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"dataset": "coco", "images": images}))
    return path, root / "att"


def test_snip_warns_that_the_unseen_words_lost_their_output_rows(tmp_path: Path):
    dataset, att = _dataset(tmp_path / "data")
    res = sparsecap(
        "prune", "--method", "snip", "--sparsity", "0.97", "--steps", "2", "--name", "snip",
        "--runs-root", str(tmp_path / "runs"), "--quiet",
        "--set", f"data.dataset={dataset}", "--set", f"data.features={att}", "--set", "data.min_word_count=1",
        "--set", "train.batch_size=2", "--set", "train.val_every=2", "--set", "train.val_images=4",
        "--set", "model.rnn_size=32", "--set", "model.input_encoding_size=16", "--set", "model.att_hid_size=16")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    (line,) = [ln for ln in out.splitlines() if "keep no output weight" in ln]
    dead = int(line.split("decoder.logit.weight: ")[1].split(" of ")[0].replace(",", ""))
    info = sparsecap("inspect", str(tmp_path / "runs" / "snip"), "--json")
    assert info.returncode == 0, info.stderr
    words = json.loads(info.stdout)["output_words"]
    assert words["words"] == WORDS + 4 and words["words"] - words["emit"] == dead
    # one saliency batch of 2 images × 5 captions shows at most ~80 words: the model keeps few more than those
    assert words["emit"] <= 100 < WORDS
