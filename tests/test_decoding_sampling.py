"""Sampling (temperature, top-k, top-p), the decoding options and the n-best API."""

from __future__ import annotations

import pytest
import torch

from sparsecap_engine.decoding.api import DecodeOptions, decode_memory, decode_nbest, decode_tag
from sparsecap_engine.decoding.greedy import filter_logprobs, greedy, sample
from sparsecap_engine.errors import UsageError
from tests.decoding_fakes import BOS, EOS, PAD, FakeVocab, TableModel

V = 8


def _setup(n: int = 10):
    model = TableModel(V, seed=11, sharpness=1.0)
    return model, model.encode({"img": torch.arange(n)})


def test_filter_top_k_and_top_p():
    logp = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logprobs(logp, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logprobs(logp, top_p=0.75)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logprobs(logp, top_p=0.8)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logprobs(logp, top_p=0.81)).tolist() == [[False, False, False, True]]
    assert torch.isinf(filter_logprobs(logp, top_p=0.01)).tolist() == [[False, True, True, True]]
    assert torch.allclose(filter_logprobs(logp, temperature=0.5), logp * 2)
    for bad in ({"temperature": 0.0}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(UsageError):
            filter_logprobs(logp, **bad)


def test_top_k_one_and_tiny_top_p_are_greedy():
    model, mem = _setup()
    g = greedy(model, mem, BOS, EOS, PAD, 6)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(sample(model, mem, BOS, EOS, PAD, 6, generator=gen, top_k=1)[0], g)
    assert torch.equal(sample(model, mem, BOS, EOS, PAD, 6, generator=gen, top_p=1e-6)[0], g)
    assert torch.equal(sample(model, mem, BOS, EOS, PAD, 6, generator=gen, temperature=1e-4)[0], g)


def test_sampling_is_seeded_and_returns_the_models_logprobs():
    model, mem = _setup(50)
    a = sample(model, mem, BOS, EOS, PAD, 6, temperature=1.5, generator=torch.Generator().manual_seed(3))
    b = sample(model, mem, BOS, EOS, PAD, 6, temperature=1.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], greedy(model, mem, BOS, EOS, PAD, 6))
    teacher = model(mem, torch.cat([torch.full((50, 1), BOS), a[0][:, :-1]], 1))
    expect = teacher.gather(2, a[0].unsqueeze(2)).squeeze(2) * (a[0] != PAD)
    assert torch.allclose(a[1], expect)  # log-probs of the untempered model, 0 after <eos>


def test_decode_options_check():
    DecodeOptions().check()
    DecodeOptions(method="beam", beam_size=3, n_best=3, length_penalty="wu_0.9", block_ngram=3).check()
    DecodeOptions(method="sample", temperature=0.7, top_k=5, top_p=0.9, n_best=4).check()
    for bad in (
        DecodeOptions(method="nucleus"),
        DecodeOptions(method="beam", beam_size=2, n_best=3),
        DecodeOptions(n_best=2),
        DecodeOptions(top_k=3),
        DecodeOptions(method="sample", length_penalty="avg"),
        DecodeOptions(method="beam", beam_size=2, length_penalty="gnmt"),
        DecodeOptions(method="sample", top_p=0.0),
        DecodeOptions(beam_size=0),
    ):
        with pytest.raises(UsageError):
            bad.check()


def test_decode_tag_names_the_decoding():
    assert decode_tag(DecodeOptions()) == "beam1"
    assert decode_tag(DecodeOptions(method="beam", beam_size=3)) == "beam3"
    assert decode_tag(DecodeOptions(method="beam", beam_size=1)) == "beam1"
    tag = decode_tag(DecodeOptions(method="beam", beam_size=5, length_penalty="wu_0.9", block_ngram=3, min_len=4,
                                   bad_endings=True))
    assert tag == "beam5-wu0.9-block3-min4-nobad"
    sampled = DecodeOptions(method="sample", temperature=0.7, top_k=5, top_p=0.9)
    assert decode_tag(sampled) == "sample-t0.7-top5-p0.9-seed0"


def test_decode_nbest_and_memory_agree():
    model, mem = _setup(6)
    vocab = FakeVocab(V)
    opts = DecodeOptions(method="beam", beam_size=4, n_best=3, max_len=6)
    seqs, scores = decode_nbest(model, mem, vocab, opts)
    assert seqs.shape[:2] == (6, 3) and torch.all(scores[:, :-1] >= scores[:, 1:])
    best = decode_memory(model, mem, vocab, opts)
    assert torch.equal(best, seqs[:, 0, : best.shape[1]]) and bool((seqs[:, 0, best.shape[1] :] == PAD).all())

    opts = DecodeOptions(method="sample", n_best=5, max_len=6, seed=1)
    seqs, scores = decode_nbest(model, mem, vocab, opts)
    assert seqs.shape[:2] == (6, 5) and torch.all(scores[:, :-1] >= scores[:, 1:])

    greedy_seqs, greedy_scores = decode_nbest(model, mem, vocab, DecodeOptions(max_len=6))
    assert torch.equal(greedy_seqs[:, 0], greedy(model, mem, BOS, EOS, PAD, 6))
    assert greedy_scores.shape == (6, 1)
