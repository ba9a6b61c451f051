from pathlib import Path

import pytest

from sparsecap_engine.errors import DataError
from sparsecap_engine.text.vocab import Vocab


def test_build_threshold_and_specials():
    caps = [["a", "red", "ball"], ["a", "blue", "ball"], ["a", "red", "box"]]
    v = Vocab.build(caps, min_count=2)
    assert v.itos[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert v.itos[4:] == ["a", "ball", "red"]  # by count then alphabetically; "blue"/"box" below threshold
    assert v.encode(["a", "blue", "ball"], 10) == [2, v.stoi["a"], 1, v.stoi["ball"], 3]


def test_truncation_keeps_eos():
    v = Vocab.build([["w"] * 30])
    ids = v.encode(["w"] * 30, 18)
    assert len(ids) == 18 and ids[0] == v.bos_id and ids[-1] == v.eos_id


def test_decode_stops_at_eos_and_skips_specials():
    v = Vocab.build([["a", "b"]])
    assert v.decode([2, v.stoi["a"], 0, v.stoi["b"], 3, v.stoi["a"]]) == "a b"
    assert v.decode([999]) == "<unk>"


def test_round_trip(tmp_path: Path):
    v = Vocab.build([["x", "y", "y"]])
    v.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == v


def test_bad_files(tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        Vocab.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json"):
        Vocab.load(tmp_path / "bad.json")
