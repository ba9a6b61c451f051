"""Radix output encoding (COMIC / ACORT, reference §5.1) and the tokenizer dispatcher."""

from __future__ import annotations

import pytest

from sparsecap_engine.errors import DataError, UsageError
from sparsecap_engine.text.radix import RadixTokenizer, digits_needed
from sparsecap_engine.text.tokenizer import build_tokenizer, load_tokenizer, tokenizer_from_json
from sparsecap_engine.text.vocab import Vocab

CAPTIONS = [["a", "red", "circle"], ["a", "blue", "square", "above", "a", "red", "circle"], ["two", "shapes"]]


def test_digits_and_special_ids():
    assert digits_needed(9998, 768) == 2  # V = 10001, b = 768 → 2 tokens per word (reference)
    assert digits_needed(768, 768) == 1 and digits_needed(769, 768) == 2 and digits_needed(1, 2) == 1
    vocab = Vocab([f"w{i}" for i in range(9997)])
    assert len(vocab) == 10001
    radix = RadixTokenizer(vocab, 768)
    assert len(radix) == 771 and radix.digits == 2
    assert (radix.pad_id, radix.bos_id, radix.eos_id, radix.unk_id) == (0, 769, 770, None)


def test_encode_decode_round_trip():
    radix = build_tokenizer("radix", CAPTIONS, radix_base=3)
    words = radix.words
    assert isinstance(radix, RadixTokenizer) and len(radix) == 6
    assert radix.digits == digits_needed(len(words) - 3, 3)
    for cap in CAPTIONS:
        ids = radix.encode(cap, max_len=40)
        assert ids[0] == radix.bos_id and ids[-1] == radix.eos_id
        assert len(ids) == 2 + radix.digits * len(cap)
        assert all(1 <= i <= 3 for i in ids[1:-1])
        assert radix.decode(ids) == " ".join(cap)


def test_word_codes_are_base_b_digits_plus_one():
    vocab = Vocab(["x", "y", "z", "u", "v"])  # V = 9 → 6 slots → base 2 needs 3 digits
    radix = RadixTokenizer(vocab, 2)
    assert radix.digits == 3
    assert radix.word_code(vocab.stoi["x"]) == [1, 1, 1]  # slot 0
    assert radix.word_code(vocab.stoi["v"]) == [2, 1, 1]  # slot 4 = 100b
    assert radix.word_code(vocab.unk_id) == [2, 1, 2]  # unk → last slot V-4 = 5 = 101b
    assert radix.encode(["y", "never-seen"], 20) == [3, 1, 1, 2, 2, 1, 2, 4]
    assert radix.decode([3, 1, 1, 2, 2, 1, 2, 4]) == "y <unk>"
    assert radix.decode([2, 2, 2, 4]) == "<unk>"  # slot 7 is past the vocabulary


def test_truncation_keeps_eos_and_whole_words():
    radix = build_tokenizer("radix", CAPTIONS, radix_base=2)
    t = radix.digits
    ids = radix.encode(CAPTIONS[1], max_len=2 + 3 * t + 1)  # room for 3 words (not 3.x)
    assert len(ids) == 2 + 3 * t and ids[-1] == radix.eos_id
    assert radix.decode(ids) == "a blue square"
    with pytest.raises(ValueError):
        radix.encode(["a"], max_len=1 + t)


def test_decode_stops_at_eos_skips_bos_pad_and_drops_partial_word():
    radix = build_tokenizer("radix", CAPTIONS, radix_base=2)
    ids = radix.encode(["red", "circle"], 30)
    code_red = ids[1 : 1 + radix.digits]
    assert radix.decode([radix.bos_id, *code_red, 0, *code_red[:1]]) == "red"
    assert radix.decode([*code_red, radix.eos_id, *code_red]) == "red"
    assert radix.is_word_end(radix.digits) and not radix.is_word_end(radix.digits + 1)


def test_json_round_trip_and_dispatch(tmp_path):
    radix = build_tokenizer("radix", CAPTIONS, radix_base=5)
    word = build_tokenizer("word", CAPTIONS)
    assert tokenizer_from_json(radix.to_json()) == radix
    assert tokenizer_from_json(word.to_json()) == word
    radix.save(tmp_path / "vocab.json")
    assert load_tokenizer(tmp_path / "vocab.json") == radix
    with pytest.raises(DataError, match="broken"):
        tokenizer_from_json("{nope", "broken.json")
    with pytest.raises(DataError, match="radix"):
        tokenizer_from_json('{"format": "sparsecap-radix-1"}', "r.json")
    with pytest.raises(UsageError):
        build_tokenizer("bpe", CAPTIONS)
    with pytest.raises(UsageError):
        RadixTokenizer(word, 1)
