"""Pins found by mutation testing (issue 12, ``benchmarks/mutation.py --area decoding``): decoded ids are trimmed to
the longest caption, one-token beams are allowed, infinite temperatures are refused, and the errors say why."""

from __future__ import annotations

import re

import pytest
import torch

from sparsecap_engine.decoding.beam import beam_search
from sparsecap_engine.decoding.greedy import filter_logprobs, greedy, sample
from sparsecap_engine.errors import UsageError
from tests.decoding_fakes import BOS, EOS, PAD, TableModel


def _memory(n: int = 3):
    return {"img": torch.arange(n)}


def test_greedy_and_sample_trim_to_the_longest_caption():
    model = TableModel(7, seed=3, eos_bias=4.0)  # <eos> is likely: captions end well before max_len
    seqs = greedy(model, _memory(), BOS, EOS, PAD, max_len=12)
    ends = [row.index(EOS) for row in seqs.tolist()]
    assert max(ends) < 11 and seqs.shape[1] == max(ends) + 1  # no all-padding columns after the last <eos>
    ids, logps = sample(model, _memory(), BOS, EOS, PAD, max_len=12, generator=torch.Generator().manual_seed(0))
    ends = [row.index(EOS) for row in ids.tolist()]
    assert ids.shape[1] == max(ends) + 1 == logps.shape[1]


def test_beam_of_one_token_captions():
    model = TableModel(7, seed=3)
    res = beam_search(model, _memory(2), BOS, EOS, PAD, max_len=1, beam_size=2)
    assert res.tokens.shape == (2, 1, 1)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(temperature=float("inf")), "temperature must be a finite number > 0 (got inf)"),
    (dict(temperature=0.0), "temperature must be a finite number > 0 (got 0.0)"),
    (dict(top_k=-1), "sampling needs top_k >= 0 and 0 < top_p <= 1 (got -1, 1.0)"),
    (dict(top_p=0.0), "sampling needs top_k >= 0 and 0 < top_p <= 1 (got 0, 0.0)"),
])
def test_sampling_option_errors(kwargs: dict, message: str):
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        filter_logprobs(torch.zeros(1, 3), **kwargs)


def test_beam_option_errors():
    model = TableModel(7)
    with pytest.raises(UsageError, match=r"^beam search needs beam >= 1 and 1 <= n-best <= beam \(got 2, 3\)$"):
        beam_search(model, _memory(1), BOS, EOS, PAD, 5, 2, n_best=3)
    with pytest.raises(UsageError, match="^max_len must be at least 1$"):
        beam_search(model, _memory(1), BOS, EOS, PAD, 0, 2)


def test_sampling_defaults_to_temperature_one_and_obeys_the_token_rules():
    from sparsecap_engine.decoding.constraints import Constraints

    model = TableModel(7, seed=5, eos_bias=3.0)
    default = sample(model, _memory(4), BOS, EOS, PAD, 8, generator=torch.Generator().manual_seed(1))
    one = sample(model, _memory(4), BOS, EOS, PAD, 8, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(default[0], one[0])
    rules = Constraints(EOS, (BOS, PAD), min_words=3)
    ids, _ = sample(model, _memory(4), BOS, EOS, PAD, 8, generator=torch.Generator().manual_seed(1), constraints=rules)
    assert all(EOS not in row[:3] for row in ids.tolist())
    assert any(EOS in row[:3] for row in default[0].tolist())  # (without the rule <eos> comes early)


class FixedModel(torch.nn.Module):
    """Every step returns the same (B, V) log-probs ``table`` (rows may hold −inf or NaN); ``calls`` counts steps."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table, self.calls = table, 0

    def init_state(self, memory):
        return None

    def step(self, memory, tokens, state):
        self.calls += 1
        return self.table[: tokens.shape[0]], state


def test_greedy_and_sample_refuse_max_len_zero():
    model = TableModel(7)
    for decode in (greedy, sample):
        with pytest.raises(UsageError, match="^max_len must be at least 1$"):
            decode(model, _memory(2), BOS, EOS, PAD, 0)


def test_sample_checks_its_options_before_calling_the_model():
    model = TableModel(7)
    for bad in (dict(top_p=0.0), dict(top_k=-1), dict(temperature=0.0)):
        with pytest.raises(UsageError):
            sample(model, _memory(2), BOS, EOS, PAD, 4, **bad)
    assert model.calls == 0


@pytest.mark.parametrize("options", [{}, dict(temperature=0.5), dict(top_k=3), dict(top_p=0.6)])
def test_sample_draws_from_the_filtered_softmax(options: dict):
    """One step over 64 rows: exactly the draws of ``multinomial(softmax(filter(logp)))`` with the same generator."""
    from sparsecap_engine.decoding.constraints import Constraints

    logits = torch.log(torch.tensor([0.05, 0.1, 0.05, 0.4, 0.25, 0.15])).expand(64, 6)
    ids, logps = sample(FixedModel(logits), {"img": torch.arange(64)}, BOS, EOS, PAD, 1,
                        generator=torch.Generator().manual_seed(7), **options)
    allowed = Constraints(EOS, (BOS, PAD)).apply(logits, 0, torch.zeros(64, 0, dtype=torch.long))
    probs = torch.softmax(filter_logprobs(allowed, **options), -1)
    expect = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(7)).squeeze(1)
    assert torch.equal(ids[:, 0], expect) and len(set(expect.tolist())) > 1  # sampled, not the argmax everywhere
    assert torch.equal(logps[:, 0], logits[0, expect])


def test_sampling_falls_back_to_greedy_when_no_token_can_be_drawn():
    """Rows whose every allowed token is −inf (or whose log-probs are NaN) take greedy's choice instead of failing."""
    from sparsecap_engine.decoding.constraints import Constraints

    rules = Constraints(EOS, (PAD, 1, BOS), min_words=1)  # 4 tokens; at t = 0 <eos> is forbidden too: nothing left
    table = torch.zeros(5, 4)
    ids, _ = sample(FixedModel(table), {"img": torch.arange(5)}, BOS, EOS, PAD, 3, constraints=rules,
                    generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, greedy(FixedModel(table), {"img": torch.arange(5)}, BOS, EOS, PAD, 3, constraints=rules))
    assert ids.tolist() == [[0, EOS]] * 5  # argmax over −inf everywhere is token 0, then <eos> is all that is left
    # a diverged model: NaN log-probs, at a different token per row (argmax takes the NaN)
    # and the other rows of the batch are still sampled
    nan = torch.zeros(4, 7)
    for row, tok in enumerate((4, 5, 6)):
        nan[row, tok] = float("nan")
    nan[3] = torch.tensor([0.0, -9, 0, -9, -9, -9, -9])  # row 3: <unk> (1) is the only likely allowed token
    ids, _ = sample(FixedModel(nan), {"img": torch.arange(4)}, BOS, EOS, PAD, 1,
                    generator=torch.Generator().manual_seed(0))
    assert ids[:, 0].tolist()[:3] == [4, 5, 6] and ids[3, 0] not in (PAD, BOS)


def test_filter_keeps_every_token_at_top_p_one_and_cuts_at_exactly_top_p():
    logp = torch.tensor([[0.0, -100.0, -200.0]])  # in float32 the first token already holds probability 1
    assert torch.equal(filter_logprobs(logp), logp) and torch.equal(filter_logprobs(logp, top_p=1.0), logp)
    even = torch.zeros(1, 4)  # probabilities exactly 1/4: the mass before the 3rd token is exactly 0.5
    assert int(torch.isfinite(filter_logprobs(even, top_p=0.5)).sum()) == 2
    assert int(torch.isfinite(filter_logprobs(even, top_p=0.75)).sum()) == 3


class ImageTable(torch.nn.Module):
    """Next-token probabilities depend on the image only (``probs[img]``, 0 → −inf); ``rows`` records the batch size of
    every ``step`` call, which reads the (expanded, then pruned) memory, so both must stay aligned with the tokens."""

    def __init__(self, probs: list[list[float]]):
        super().__init__()
        self.table, self.rows = torch.log(torch.tensor(probs)), []

    def init_state(self, memory):
        return None

    def step(self, memory, tokens, state):
        self.rows.append(tokens.shape[0])
        assert memory["img"].shape[0] == tokens.shape[0]
        return self.table[memory["img"]], state

    @staticmethod
    def reorder_state(state, index):
        return state

    @staticmethod
    def expand_memory(memory, n):
        from sparsecap_engine.models.base import repeat_batch

        return repeat_batch(memory, n)


def _probs(eos: float, *words: float) -> list[float]:
    return [0.0, 0.0, 0.0, eos, *words]  # <pad>, <unk>, <bos> never; then <eos> and the words 4, 5, …


def test_beam_stops_an_image_once_nothing_can_beat_it_and_drops_it_from_the_batch():
    # image 0: after step 0 the finished "<eos>" (log ½) ties the best active bound (log ½): nothing can beat it
    # image 1: "w4" has probability 0.9, so it keeps searching to max_len
    model = ImageTable([_probs(0.5, 0.5), _probs(0.1, 0.9)])
    res = beam_search(model, {"img": torch.arange(2)}, BOS, EOS, PAD, max_len=4, beam_size=2)
    assert model.rows == [4, 2, 2, 2]  # image 0 leaves the batch after one step (2 beams each)
    assert res.best.tolist() == [[EOS, PAD, PAD, PAD], [4, 4, 4, 4]]
    assert torch.allclose(res.scores[:, 0], torch.tensor([0.5, 0.9 ** 4]).log())


def test_beam_trims_the_n_best_to_their_longest_caption():
    model = ImageTable([_probs(0.7, 0.1, 0.1, 0.1)])  # "<eos>", then three "w <eos>" (ties), and it stops
    res = beam_search(model, {"img": torch.arange(1)}, BOS, EOS, PAD, max_len=6, beam_size=4, n_best=4)
    assert res.tokens.shape == (1, 4, 2) and model.rows == [4, 4]
    assert res.tokens[0, 0].tolist() == [EOS, PAD] and sorted(res.tokens[0, 1:, 0].tolist()) == [4, 5, 6]
    assert res.tokens[0, 1:, 1].tolist() == [EOS] * 3


def test_beam_with_no_possible_caption_returns_one_padding_column():
    from sparsecap_engine.decoding.constraints import Constraints

    rules = Constraints(EOS, (PAD, 1, BOS), min_words=5)  # only <eos> is left, and it is forbidden up to max_len
    res = beam_search(ImageTable([[0.25] * 4]), {"img": torch.zeros(2, dtype=torch.long)}, BOS, EOS, PAD, 3, 2,
                      n_best=2, constraints=rules)
    assert res.tokens.tolist() == [[[PAD], [PAD]]] * 2
    assert torch.isneginf(res.scores).all() and torch.isneginf(res.logprobs).all()


def test_constraint_option_errors():
    from sparsecap_engine.decoding.constraints import Constraints

    message = "^decoding constraints need unit >= 1, min_len >= 0 and block_ngram >= 0$"
    for bad in (dict(unit=0), dict(min_words=-1), dict(block_ngram=-1)):
        with pytest.raises(UsageError, match=message):
            Constraints(EOS, **bad)


def test_for_vocab_defaults_add_no_rule():
    from sparsecap_engine.decoding.constraints import Constraints
    from tests.decoding_fakes import FakeVocab

    rules = Constraints.for_vocab(FakeVocab(8))
    assert not rules.active and rules.unit == 1 and rules.never == (BOS, PAD)
    assert torch.isfinite(rules.apply(torch.zeros(1, 8), 0, torch.zeros(1, 0, dtype=torch.long))[0, EOS])

    class NoDigits(FakeVocab):
        digits = None  # a tokenizer that says nothing about word length: one token per word

    assert Constraints.for_vocab(NoDigits(8)).unit == 1


def test_bad_endings_look_at_each_rows_last_word():
    from sparsecap_engine.decoding.constraints import Constraints

    rules = Constraints(EOS, (BOS, PAD), bad_codes=torch.tensor([[4], [6]]))  # two words that cannot end a caption
    hist = torch.tensor([[5, 4], [4, 5], [5, 6]])
    out = rules.apply(torch.zeros(3, 8), 2, hist)
    assert torch.isinf(out[:, EOS]).tolist() == [True, False, True]


def test_radix_bad_endings_are_whole_digit_codes():
    from sparsecap_engine.decoding.constraints import Constraints
    from sparsecap_engine.text.radix import RadixTokenizer
    from sparsecap_engine.text.vocab import Vocab

    tok = RadixTokenizer(Vocab(["the", "dog", "a", *[f"w{i}" for i in range(27)]]), base=6)  # 2 digits per word
    rules = Constraints.for_vocab(tok, bad_endings=True)
    code = {w: tok.word_code(tok.words.stoi[w]) for w in ("the", "dog", "a")}
    assert sorted(rules.bad_codes.tolist()) == sorted([code["the"], code["a"]])
    hist = torch.tensor([code["dog"] + code["the"], code["the"] + code["dog"], code["dog"] + code["a"]])
    out = rules.apply(torch.zeros(3, len(tok)), 4, hist)
    assert torch.isinf(out[:, tok.eos_id]).tolist() == [True, False, True]


def test_ngram_blocking_bans_the_completing_token_from_the_first_chance_on():
    from sparsecap_engine.decoding.constraints import Constraints

    banned = lambda rules, t, hist: torch.isinf(  # noqa: E731
        rules.apply(torch.zeros(1, 10), t, torch.tensor([hist]))[0]).nonzero().flatten().tolist()
    bigram = Constraints(9, block_ngram=2)
    assert banned(bigram, 2, [4, 4]) == [4]  # "4 4" then 4 would repeat the bigram "4 4" (overlapping)
    assert banned(bigram, 1, [4]) == []
    trigram = Constraints(9, block_ngram=3)
    assert banned(trigram, 5, [4, 5, 6, 4, 5]) == [6]  # "4 5 6" again: only its last token is banned
    assert banned(trigram, 5, [4, 5, 6, 7, 5]) == []
    word = Constraints(9, unit=2, block_ngram=1)  # radix words of 2 digits: only at the 2nd digit of a word
    assert banned(word, 4, [4, 4, 4, 4]) == [] and banned(word, 5, [4, 4, 4, 4, 4]) == [4, 9]


# ---------------------------------------------------------------------------------------------- decoding/api.py
def _api_setup():
    from tests.decoding_fakes import FakeVocab

    model = TableModel(8, seed=3, sharpness=1.5, eos_bias=1.5, markov=True)  # loops and early <eos> are likely
    return model, {"img": torch.arange(12)}, FakeVocab(8)


RULE_OPTIONS = dict(max_len=7, min_len=2, block_ngram=2, bad_endings=True)


def _rules(vocab, min_len=2, block=2, bad=True):
    from sparsecap_engine.decoding.constraints import Constraints

    return Constraints.for_vocab(vocab, min_len, block, bad)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)


def test_decode_memory_is_the_decoder_with_the_options_rules():
    from sparsecap_engine.decoding.api import DecodeOptions, decode_memory

    model, mem, vocab = _api_setup()
    other_rules = [_rules(vocab, 0), _rules(vocab, 3), _rules(vocab, block=0), _rules(vocab, block=3),
                   _rules(vocab, bad=False), None]
    want = greedy(model, mem, BOS, EOS, PAD, 7, _rules(vocab))
    assert _same(decode_memory(model, mem, vocab, DecodeOptions(**RULE_OPTIONS)), want)
    assert not any(_same(want, greedy(model, mem, BOS, EOS, PAD, 7, r)) for r in other_rules)  # every rule bites

    def beam(lp="avg", rules=_rules(vocab)):
        return beam_search(model, mem, BOS, EOS, PAD, 7, 3, length_penalty=lp, constraints=rules).best

    want = beam()
    opts = DecodeOptions(method="beam", beam_size=3, length_penalty="avg", **RULE_OPTIONS)
    assert _same(decode_memory(model, mem, vocab, opts), want)
    assert not any(_same(want, other) for other in [beam(lp="")] + [beam(rules=r) for r in other_rules])

    def draw(temperature=0.7, top_k=3, top_p=0.9, seed=3, rules=_rules(vocab)):
        return sample(model, mem, BOS, EOS, PAD, 7, temperature=temperature, top_k=top_k, top_p=top_p,
                      constraints=rules, generator=torch.Generator().manual_seed(seed))[0]

    want = draw()
    opts = DecodeOptions(method="sample", temperature=0.7, top_k=3, top_p=0.9, seed=3, **RULE_OPTIONS)
    assert _same(decode_memory(model, mem, vocab, opts), want)
    others = [draw(temperature=1.0), draw(top_k=0), draw(top_p=1.0), draw(seed=4)]
    others += [draw(rules=r) for r in other_rules]
    assert not any(_same(want, other) for other in others)


def test_decode_nbest_is_the_decoder_with_the_options_rules_and_scores():
    from sparsecap_engine.decoding.api import DecodeOptions, decode_nbest
    from tests.decoding_fakes import score

    model, mem, vocab = _api_setup()
    opts = DecodeOptions(method="beam", beam_size=3, n_best=2, length_penalty="avg", **RULE_OPTIONS)
    res = beam_search(model, mem, BOS, EOS, PAD, 7, 3, n_best=2, length_penalty="avg", constraints=_rules(vocab))
    seqs, scores = decode_nbest(model, mem, vocab, opts)
    assert _same(seqs, res.tokens) and torch.equal(scores, res.scores)

    seqs, scores = decode_nbest(model, mem, vocab, DecodeOptions(**RULE_OPTIONS))
    want = greedy(model, mem, BOS, EOS, PAD, 7, _rules(vocab))
    assert _same(seqs[:, 0], want) and scores.shape == (12, 1)
    for img, row in enumerate(want.tolist()):
        words = row[: row.index(EOS) + 1] if EOS in row else row
        assert scores[img, 0].item() == pytest.approx(score(model, img, words), abs=1e-5)

    opts = DecodeOptions(method="sample", n_best=4, temperature=0.7, top_k=3, top_p=0.9, seed=3, **RULE_OPTIONS)
    seqs, scores = decode_nbest(model, mem, vocab, opts)
    ids, logps = sample(model, model.expand_memory(mem, 4), BOS, EOS, PAD, 7, temperature=0.7, top_k=3, top_p=0.9,
                        constraints=_rules(vocab), generator=torch.Generator().manual_seed(3))
    logp = logps.sum(1).reshape(12, 4)
    order = logp.argsort(dim=1, descending=True)
    assert torch.equal(scores, logp.gather(1, order))
    assert _same(seqs, ids.reshape(12, 4, -1).gather(1, order[..., None].expand(-1, -1, ids.shape[1])))


def test_decode_with_an_extra_decoder_and_unknown_methods(monkeypatch):
    from sparsecap_engine.decoding import api

    def fake(model, memory, vocab, opts):  # every argument shows in the ids
        return (memory["img"][:, None] * 100 + opts.max_len * 10 + len(vocab) + model.table.shape[1]).expand(-1, 3)

    monkeypatch.setitem(api.EXTRA_DECODERS, "fake", fake)
    model, mem, vocab = _api_setup()
    opts = api.DecodeOptions(method="fake", max_len=5)
    seqs, scores = api.decode_nbest(model, mem, vocab, opts)
    assert seqs.shape == (12, 1, 3) and torch.equal(seqs[:, 0, 0], torch.arange(12) * 100 + 66)
    assert torch.equal(scores, torch.zeros(12, 1))
    assert torch.equal(api.decode_memory(model, mem, vocab, opts), seqs[:, 0])
    assert api.decode_tag(opts) == "fake" and api.decode_tag(api.DecodeOptions(method="fake", min_len=2)) == "fake-min2"
    message = "^unknown decoding method 'nope'; choose from greedy, sample, beam$"
    for call in (api.decode_nbest, api.decode_memory):
        with pytest.raises(UsageError, match=message):
            call(model, mem, vocab, api.DecodeOptions(method="nope"))
    with pytest.raises(UsageError, match=message):
        api.DecodeOptions(method="nope").check()


def test_decode_tag_of_default_and_plain_options():
    from sparsecap_engine.decoding.api import DecodeOptions, decode_tag

    assert decode_tag(DecodeOptions(method="sample")) == "sample-seed0"
    assert decode_tag(DecodeOptions(method="sample", temperature=2.0, top_p=1.0, seed=4)) == "sample-t2-seed4"
    assert decode_tag(DecodeOptions(beam_size=3)) == "beam1"  # greedy: the beam size is not used
    assert decode_tag(DecodeOptions(method="beam", beam_size=3, length_penalty="none")) == "beam3"


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(beam_size=0), "--beam must be at least 1 (got 0)"),
    (dict(max_len=0), "--max-len must be >= 1, --min-len and --block-ngram >= 0"),
    (dict(min_len=-1), "--max-len must be >= 1, --min-len and --block-ngram >= 0"),
    (dict(block_ngram=-1), "--max-len must be >= 1, --min-len and --block-ngram >= 0"),
    (dict(method="beam", beam_size=2, n_best=3), "--n-best must be between 1 and the beam size (got 3, beam 2)"),
    (dict(n_best=2), "--n-best > 1 needs --beam K or --sample"),
    (dict(length_penalty="avg"), "--length-penalty applies to beam search (--beam K > 1)"),
    (dict(top_p=0.9), "--temperature, --top-k and --top-p apply to sampling (--sample)"),
    (dict(temperature=0.7), "--temperature, --top-k and --top-p apply to sampling (--sample)"),
])
def test_decode_option_errors(kwargs: dict, message: str):
    from sparsecap_engine.decoding.api import DecodeOptions

    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        DecodeOptions(**kwargs).check()


def test_decode_options_edges_and_dict():
    from dataclasses import asdict

    from sparsecap_engine.decoding.api import DecodeOptions, fit_vocab

    opts = DecodeOptions(max_len=1, method="beam", beam_size=3)
    assert opts.check() is opts and opts.to_dict() == asdict(opts) and opts.to_dict()["beam_size"] == 3

    class Tiny:  # <pad>, <bos> and one word: a beam of one
        def __len__(self):
            return 3

    assert fit_vocab(DecodeOptions(method="beam", beam_size=4, n_best=3), Tiny()) == DecodeOptions(
        method="beam", beam_size=1, n_best=1)
