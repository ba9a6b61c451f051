"""Decoding flags of ``caption`` (beam, n-best, sampling) and their usage errors, in process on a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from sparsecap_cli.main import run
from sparsecap_engine.checkpoint.model_io import save_model
from sparsecap_engine.models.registry import build_model, preset
from sparsecap_engine.text.vocab import Vocab


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("decode-cli")
    vocab = Vocab(["a", "red", "blue", "circle", "square", "above", "the"])
    cfg = preset("ud-small")
    cfg.update(rnn_size=24, input_encoding_size=12, att_hid_size=12, drop_prob_lm=0.0, encoder_args={"channels": [8]})
    torch.manual_seed(0)
    model = build_model(cfg, len(vocab)).eval()
    ckpt = root / "tiny.safetensors"
    save_model(ckpt, model, vocab, image_size=32)
    image = root / "img.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(image)
    return ckpt, image


def _run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        run(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_caption_beam_n_best_and_sampling(checkpoint, capsys):
    ckpt, image = checkpoint
    code, out, err = _run(capsys, "caption", str(image), "--checkpoint", str(ckpt), "--beam", "3", "--n-best", "3",
                          "--length-penalty", "wu_0.9", "--block-ngram", "2", "--json")
    assert code == 0, err
    ranked = json.loads(out)[0]["captions"]
    assert len(ranked) == 3 and ranked[0]["score"] >= ranked[1]["score"] >= ranked[2]["score"]
    code, out, err = _run(capsys, "caption", str(image), str(image), "--checkpoint", str(ckpt), "--sample",
                          "--top-k", "3", "--top-p", "0.9", "--temperature", "0.8", "--seed", "4", "--json")
    assert code == 0, err
    assert [r["image"] for r in json.loads(out)] == [str(image), str(image)]
    code, greedy_out, err = _run(capsys, "caption", str(image), "--checkpoint", str(ckpt))
    code1, beam1_out, _ = _run(capsys, "caption", str(image), "--checkpoint", str(ckpt), "--beam", "1")
    assert code == code1 == 0 and greedy_out == beam1_out


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--sample", "--beam", "3"], "exclude"),
        (["--length-penalty", "avg"], "beam search"),
        (["--beam", "3", "--length-penalty", "gnmt"], "length penalty"),
        (["--top-k", "5"], "sampling"),
        (["--beam", "2", "--n-best", "3"], "--n-best"),
        (["--sample", "--temperature", "0"], "temperature"),
    ],
)
def test_bad_decoding_flags_are_one_line_usage_errors(checkpoint, capsys, flags, needle):
    ckpt, image = checkpoint
    code, _, err = _run(capsys, "caption", str(image), "--checkpoint", str(ckpt), *flags)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
