"""Beam search: greedy at K = 1, exhaustive optimum at a wide beam, length penalty, blocking, constraints."""

from __future__ import annotations

import pytest
import torch

from sparsecap_engine.decoding.beam import beam_search, length_penalty_fn
from sparsecap_engine.decoding.constraints import Constraints
from sparsecap_engine.decoding.greedy import greedy
from sparsecap_engine.errors import UsageError
from tests.decoding_fakes import BOS, EOS, PAD, FakeVocab, TableModel, exhaustive, score

V, L, IMAGES = 6, 4, 6


def _memory(model: TableModel, n: int = IMAGES):
    return model.encode({"img": torch.arange(n)})


def _words(seq: list[int]) -> list[int]:
    return [t for t in seq if t not in (EOS, PAD)]


def _trim(row: torch.Tensor) -> list[int]:
    out = []
    for t in row.tolist():
        if t == PAD:
            break
        out.append(t)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_equals_greedy(seed: int):
    model = TableModel(V, seed=seed, sharpness=1.5)
    mem = _memory(model, 20)
    assert torch.equal(beam_search(model, mem, BOS, EOS, PAD, 7, 1).best, greedy(model, mem, BOS, EOS, PAD, 7))


#: the penalties written out here, not taken from the code under test (``n``: tokens, ``<eos>`` included)
PENALTIES = {"": lambda n: 1.0, "wu_0.9": lambda n: ((5 + n) / 6) ** 0.9, "avg": lambda n: float(n),
             "wu_1": lambda n: (5 + n) / 6}


def test_length_penalty_values():
    assert length_penalty_fn("wu_0.9")(7) == pytest.approx(2 ** 0.9)  # GNMT: ((5 + 7) / 6) ** 0.9
    assert length_penalty_fn("wu1")(1) == pytest.approx(1.0) and length_penalty_fn("WU_2")(13) == pytest.approx(9.0)
    assert length_penalty_fn("avg")(4) == 4.0 and length_penalty_fn("avg")(0) == 1.0
    assert length_penalty_fn("none")(9) == length_penalty_fn("")(9) == 1.0
    with pytest.raises(UsageError, match="length penalty"):
        length_penalty_fn("wu_")


@pytest.mark.parametrize("penalty", ["", "wu_0.9", "avg"])
def test_wide_beam_finds_the_exhaustive_optimum(penalty: str):
    model = TableModel(V, seed=1, sharpness=1.0)
    res = beam_search(model, _memory(model), BOS, EOS, PAD, L, beam_size=(V - 3) ** L, length_penalty=penalty)
    lp = PENALTIES[penalty]
    for img in range(IMAGES):
        best_score, best_seq = exhaustive(model, img, V, L, lp)
        assert res.scores[img, 0].item() == pytest.approx(best_score, abs=1e-5)
        assert _trim(res.tokens[img, 0]) == best_seq
        assert res.logprobs[img, 0].item() == pytest.approx(score(model, img, best_seq), abs=1e-5)


def test_one_step_call_per_time_step_for_all_hypotheses():
    model = TableModel(V, seed=3)
    res = beam_search(model, _memory(model, 16), BOS, EOS, PAD, 8, beam_size=5)
    assert model.calls <= 8 and res.tokens.shape[:2] == (16, 1)


def test_n_best_are_sorted_distinct_and_scored():
    model = TableModel(V, seed=4, sharpness=1.0)
    res = beam_search(model, _memory(model), BOS, EOS, PAD, L, beam_size=6, n_best=4, length_penalty="wu_1")
    assert res.tokens.shape[:2] == (IMAGES, 4)
    assert torch.all(res.scores[:, :-1] >= res.scores[:, 1:])
    lp = PENALTIES["wu_1"]
    for img in range(IMAGES):
        seqs = [_trim(r) for r in res.tokens[img]]
        assert len({tuple(s) for s in seqs}) == 4
        for seq, s in zip(seqs, res.scores[img].tolist(), strict=True):
            assert score(model, img, seq) / lp(len(seq)) == pytest.approx(s, abs=1e-5)


def test_length_penalty_favours_longer_captions():
    model = TableModel(V, seed=5, sharpness=1.0, eos_bias=1.0)
    mem = _memory(model, 30)
    lengths = {}
    for penalty in ("", "wu_1.5", "avg"):
        res = beam_search(model, mem, BOS, EOS, PAD, L, beam_size=(V - 3) ** L, length_penalty=penalty)
        lengths[penalty] = sum(len(_trim(r)) for r in res.best)
    assert lengths[""] < lengths["wu_1.5"] and lengths[""] < lengths["avg"]


def test_unknown_length_penalty_is_a_usage_error():
    with pytest.raises(UsageError, match="length penalty"):
        length_penalty_fn("gnmt")


def _repeats(seq: list[int], n: int) -> bool:
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) != len(set(grams))


def test_ngram_blocking_removes_repeats_and_stays_optimal():
    model = TableModel(V, seed=6, sharpness=3.0, markov=True)  # loops: the same bigram again and again
    mem, max_len, wide = _memory(model, 12), 5, (V - 3) ** 5
    plain = beam_search(model, mem, BOS, EOS, PAD, max_len, beam_size=3)
    assert any(_repeats(_words(_trim(r)), 2) for r in plain.best)
    rules = Constraints(EOS, (BOS, PAD), block_ngram=2)
    blocked = beam_search(model, mem, BOS, EOS, PAD, max_len, beam_size=wide, constraints=rules)
    for img, row in enumerate(blocked.best):
        seq = _trim(row)
        assert not _repeats(_words(seq), 2)
        ok = lambda s: not _repeats(_words(s), 2)  # noqa: E731
        assert blocked.scores[img, 0].item() == pytest.approx(exhaustive(model, img, V, max_len, allowed=ok)[0])
    assert torch.equal(greedy(model, mem, BOS, EOS, PAD, max_len, rules), beam_search(
        model, mem, BOS, EOS, PAD, max_len, 1, constraints=rules).best)


def test_min_length_and_bad_endings():
    vocab = FakeVocab(V)  # id 4 is "the"
    model = TableModel(V, seed=7, sharpness=1.0, eos_bias=2.0)
    mem, wide = _memory(model, 12), (V - 3) ** L
    rules = Constraints.for_vocab(vocab, min_len=2)
    res = beam_search(model, mem, BOS, EOS, PAD, L, beam_size=wide, constraints=rules)
    for img, row in enumerate(res.best):
        assert len(_words(_trim(row))) >= 2
        best = exhaustive(model, img, V, L, allowed=lambda s: len(_words(s)) >= 2)
        assert res.scores[img, 0].item() == pytest.approx(best[0])

    rules = Constraints.for_vocab(vocab, bad_endings=True)
    assert rules.bad_codes is not None and rules.bad_codes.tolist() == [[4]]
    plain = beam_search(model, mem, BOS, EOS, PAD, L, beam_size=wide)
    fixed = beam_search(model, mem, BOS, EOS, PAD, L, beam_size=wide, constraints=rules)
    ends = lambda s: EOS in s and len(s) > 1 and s[-2] == 4  # noqa: E731
    assert any(ends(_trim(r)) for r in plain.best)
    assert not any(ends(_trim(r)) for r in fixed.best)


def test_radix_eos_only_at_word_boundaries():
    from sparsecap_engine.text.radix import RadixTokenizer
    from sparsecap_engine.text.vocab import Vocab

    tok = RadixTokenizer(Vocab([f"w{i}" for i in range(30)]), base=6)  # 31 slots in base 6 → 2 digits per word
    assert tok.digits == 2
    rules = Constraints.for_vocab(tok, bad_endings=True)
    assert rules.unit == 2 and rules.never == (tok.bos_id, tok.pad_id)
    model = TableModel(len(tok), seed=8, sharpness=0.5, eos_bias=0.5, eos=tok.eos_id)
    mem = _memory(model, 16)
    for seqs in (greedy(model, mem, tok.bos_id, tok.eos_id, tok.pad_id, 9, rules),
                 beam_search(model, mem, tok.bos_id, tok.eos_id, tok.pad_id, 9, 4, constraints=rules).best):
        for row in seqs.tolist():
            assert tok.bos_id not in row
            if tok.eos_id in row:
                assert row.index(tok.eos_id) % 2 == 0
    unconstrained = greedy(model, mem, tok.bos_id, tok.eos_id, tok.pad_id, 9)
    assert any(r.index(tok.eos_id) % 2 for r in unconstrained.tolist() if tok.eos_id in r)


def test_radix_blocking_works_on_words():
    rules = Constraints(eos=9, unit=2, block_ngram=1)
    hist = torch.tensor([[1, 2, 3, 1, 4]])  # words (1,2) (3,1), then digit 4: next digit completes a word
    out = rules.apply(torch.zeros(1, 10), 5, hist)
    assert torch.isinf(out[0]).nonzero().flatten().tolist() == [9]  # (4, x) was never a word; <eos> mid-word
    hist = torch.tensor([[1, 2, 3, 4, 1]])  # next digit after 1: (1, 2) is a word already → 2 is banned
    out = rules.apply(torch.zeros(1, 10), 5, hist)
    assert torch.isinf(out[0]).nonzero().flatten().tolist() == [2, 9]  # 9: <eos> is not at a word boundary


def test_real_updown_beam_one_equals_greedy_and_wider_beams_score_higher():
    from sparsecap_engine.models.registry import build_model, preset

    cfg = preset("ud-small")
    cfg.update(rnn_size=32, input_encoding_size=16, att_hid_size=16, drop_prob_lm=0.0, encoder_args={"channels": [8]})
    torch.manual_seed(0)
    model = build_model(cfg, vocab_size=20).eval()
    with torch.no_grad():
        mem = model.encode({"images": torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)})
        assert torch.equal(beam_search(model, mem, 2, 3, 0, 8, 1).best, greedy(model, mem, 2, 3, 0, 8))
        b1, b4 = (beam_search(model, mem, 2, 3, 0, 8, k) for k in (1, 4))
    assert torch.all(b4.scores[:, 0] >= b1.scores[:, 0] - 1e-5)


def test_bad_options_are_usage_errors():
    model = TableModel(V)
    with pytest.raises(UsageError):
        beam_search(model, _memory(model), BOS, EOS, PAD, L, beam_size=2, n_best=3)
    with pytest.raises(UsageError):
        beam_search(model, _memory(model), BOS, EOS, PAD, L, beam_size=0)


def test_beam_wider_than_the_vocabulary_is_capped():
    from sparsecap_engine.decoding.api import DecodeOptions, fit_vocab
    from sparsecap_engine.text.vocab import Vocab

    vocab = Vocab.build([["a", "b", "c"]], min_count=1)
    opts = DecodeOptions(method="beam", beam_size=500, n_best=400).check()
    fitted = fit_vocab(opts, vocab)
    assert fitted.beam_size == len(vocab) - 2 and fitted.n_best == len(vocab) - 2
    small = DecodeOptions(method="beam", beam_size=2).check()
    assert fit_vocab(small, vocab) is small
