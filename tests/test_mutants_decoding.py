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
