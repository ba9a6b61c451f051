"""Pins found by mutation testing (issue 12, ``benchmarks/mutation.py --area scst``): the SCST objective's samples are
the seeded ones and obey the token rules, beam samples are scored by true teacher forcing, the baseline option picks
the baseline it names, and the option errors say what is wrong."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from sparsecap_engine.decoding.beam import beam_search
from sparsecap_engine.decoding.constraints import Constraints
from sparsecap_engine.decoding.greedy import sample
from sparsecap_engine.errors import UsageError
from sparsecap_engine.metrics.cider import CiderD
from sparsecap_engine.models.base import index_batch, repeat_batch
from sparsecap_engine.text.radix import RadixTokenizer
from sparsecap_engine.text.vocab import Vocab
from sparsecap_engine.training.scst import CaptionReward, ScstOptions, leave_one_out, reward_loss, scst_objective

REFS = [
    ["a red circle above a blue square", "a blue square under a red circle"],
    ["a small green triangle", "a green triangle on the left"],
    ["two yellow squares", "a pair of yellow squares"],
]
WORDS = Vocab(sorted({w for caps in REFS for c in caps for w in c.split()}))


class _Policy(nn.Module):
    """A caption model whose next-token logits come from a table indexed by (image parity, step, previous token);
    ``forced`` (token, then <eos>) makes it all but deterministic: ``forced[0]`` at step 0 and ``forced[1]`` after."""

    def __init__(self, vocab_size: int, max_len: int, seed: int = 0, forced: tuple[int, int] | None = None):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        table = torch.randn(2, max_len, vocab_size, vocab_size, generator=g) * 1.5
        if forced is not None:
            table.zero_()
            table[:, 0, :, forced[0]] = 30.0
            table[:, 1:, :, forced[1]] = 30.0
        self.register_buffer("table", table)
        self.bias = nn.Parameter(torch.zeros(vocab_size))  # the objective reads its device from a parameter

    def encode(self, batch):
        return {"img": batch["img"].long()}

    def init_state(self, memory):
        return {"t": torch.zeros_like(memory["img"])}

    def step(self, memory, tokens, state):
        t = state["t"].clamp(max=self.table.shape[1] - 1)
        logits = self.table[memory["img"] % 2, t, tokens] + self.bias
        return torch.log_softmax(logits, -1), {"t": state["t"] + 1}

    def forward(self, memory, tokens):
        state, out = self.init_state(memory), []
        for t in range(tokens.shape[1]):
            logp, state = self.step(memory, tokens[:, t], state)
            out.append(logp)
        return torch.stack(out, 1)

    @staticmethod
    def reorder_state(state, index):
        return index_batch(state, index)

    @staticmethod
    def expand_memory(memory, n):
        return repeat_batch(memory, n)


class _Data:
    def image_batch(self, index):
        return {"img": torch.as_tensor(index)}


class _Recording:
    """A tokenizer that records every id sequence it decodes (the objective's samples and greedy captions)."""

    def __init__(self, tok):
        self.tok, self.seen = tok, []

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def __len__(self):
        return len(self.tok)

    def decode(self, ids):
        self.seen.append(list(ids))
        return self.tok.decode(ids)


def _length_reward(captions, images):
    """Different captions of an image get different rewards (so no advantage is 0 by accident)."""
    return np.array([len(c.split()) + sum(k * ord(ch) for k, ch in enumerate(c)) % 97 / 97 + 0.25 * int(i)
                     for c, i in zip(captions, images, strict=True)])


@pytest.mark.parametrize("sampler", ["random", "beam"])
def test_samples_and_greedy_baseline_end_radix_captions_at_word_boundaries(sampler: str):
    """The policy wants <eos> right after its first digit; the objective's token rules must refuse it mid-word in the
    samples and in the greedy baseline's caption alike."""
    tok = _Recording(RadixTokenizer(WORDS, base=5))
    assert tok.digits == 2
    model = _Policy(len(tok), 6, forced=(1, tok.eos_id))
    opts = ScstOptions(source="x", samples=2, sample=sampler, baseline="greedy")
    objective = scst_objective(opts, tok, _length_reward, max_len=6, seed=1)
    objective(model, _Data(), [0, 1], step=0)
    assert len(tok.seen) == 2 * 2 + 2  # the samples, then the greedy captions
    for row in tok.seen:
        assert tok.eos_id in row and row.index(tok.eos_id) % 2 == 0, row


def test_random_samples_are_the_seeded_ones():
    """Sample j of step s is drawn with a generator seeded by ``seed · 7919 + s`` (resume is exact), whatever the
    global RNG says; the loss is the policy gradient with the leave-one-out baseline."""
    vocab = _Recording(WORDS)
    model = _Policy(len(WORDS), 5, seed=4)
    opts = ScstOptions(source="x", samples=3, sample="random", baseline="mean")
    index, step, seed = [0, 1], 5, 2

    def expected(seed_used: int) -> torch.Tensor:
        expanded = model.expand_memory(model.encode(_Data().image_batch(index)), 3)
        gen = torch.Generator().manual_seed(seed_used * 7919 + step)
        seqs, logp = sample(model, expanded, WORDS.bos_id, WORDS.eos_id, WORDS.pad_id, 5, generator=gen,
                            constraints=Constraints.for_vocab(WORDS))
        rewards = _length_reward([WORDS.decode(s) for s in seqs.tolist()], np.repeat(index, 3)).reshape(2, 3)
        advantage = torch.as_tensor((rewards - leave_one_out(rewards)).reshape(-1))
        return reward_loss(logp, seqs != WORDS.pad_id, advantage), seqs

    want, seqs = expected(seed)
    torch.manual_seed(123)
    loss, _ = scst_objective(opts, vocab, _length_reward, max_len=5, seed=seed)(model, _Data(), index, step)
    assert vocab.seen == seqs.tolist()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    vocab.seen.clear()
    torch.manual_seed(7)
    default_seed, _ = scst_objective(opts, vocab, _length_reward, max_len=5)(model, _Data(), index, step)
    assert vocab.seen == expected(0)[1].tolist()  # the default seed is 0
    assert default_seed.item() == pytest.approx(expected(0)[0].item(), rel=1e-6)
    assert expected(0)[1].tolist() != seqs.tolist()  # (the check above can tell the seeds apart)


def test_beam_samples_are_scored_by_teacher_forcing():
    model = _Policy(len(WORDS), 5, seed=5)
    opts = ScstOptions(source="x", samples=3, sample="beam", baseline="mean")
    index = [0, 1]
    loss, _ = scst_objective(opts, WORDS, _length_reward, max_len=5)(model, _Data(), index, 0)
    memory = model.encode(_Data().image_batch(index))
    with torch.no_grad():
        seqs = beam_search(model, memory, WORDS.bos_id, WORDS.eos_id, WORDS.pad_id, 5, 3, n_best=3,
                           constraints=Constraints.for_vocab(WORDS)).tokens.flatten(0, 1)
    logp = torch.zeros(seqs.shape)
    for r, row in enumerate(seqs.tolist()):  # one step at a time: the log-prob of each token given its true prefix
        state, prev = model.init_state(index_batch(memory, torch.tensor([r // 3]))), WORDS.bos_id
        for t, token in enumerate(row):
            step_logp, state = model.step(index_batch(memory, torch.tensor([r // 3])), torch.tensor([prev]), state)
            logp[r, t], prev = step_logp[0, token], token
    rewards = _length_reward([WORDS.decode(s) for s in seqs.tolist()], np.repeat(index, 3)).reshape(2, 3)
    advantage = torch.as_tensor((rewards - leave_one_out(rewards)).reshape(-1))
    assert advantage.abs().min() > 0 and len({tuple(r) for r in seqs.tolist()}) == 6
    assert loss.item() == pytest.approx(reward_loss(logp, seqs != WORDS.pad_id, advantage).item(), rel=1e-5)


@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_the_baseline_option_picks_that_baseline(baseline: str):
    """A reward equal to the number of captions scored per call: the greedy baseline scores one caption per image
    (2 here), the mean baseline is the mean of the other samples' rewards (2 images × 3 samples = 6)."""
    model = _Policy(len(WORDS), 5, seed=6)
    opts = ScstOptions(source="x", samples=3, sample="random", baseline=baseline)

    def reward(captions, images):
        return np.full(len(captions), float(len(captions)))

    loss, info = scst_objective(opts, WORDS, reward, max_len=5)(model, _Data(), [0, 1], 0)
    assert info["reward"] == 6.0 and info["baseline"] == (2.0 if baseline == "greedy" else 6.0)
    assert info["items"] == 6
    if baseline == "mean":
        assert loss.item() == 0.0  # every advantage is 0


def test_reward_default_weight_is_plain_cider_d():
    cider = CiderD.from_refs(dict(enumerate(REFS)))
    hyps, images = ["a red circle", "two yellow squares", "a green triangle"], [0, 2, 1]
    expect = cider.scores(hyps, images, dict(enumerate(REFS)))
    assert np.allclose(CaptionReward(REFS, cider)(hyps, images), expect) and expect.min() > 0


def test_reward_loss_of_one_token_keeps_the_model_dtype():
    logp = torch.tensor([[-0.5, -2.0]])
    loss = reward_loss(logp, torch.tensor([[True, False]]), torch.tensor([2.0], dtype=torch.float64))
    assert loss.dtype == torch.float32 and float(loss) == pytest.approx(1.0)


@pytest.mark.parametrize(("opts", "message"), [
    (ScstOptions(), "SCST needs a trained run to start from (--from RUN)"),
    (ScstOptions(source="x", sample="gumbel"), "unknown --scst-sample 'gumbel'; choose from random, beam"),
    (ScstOptions(source="x", baseline="zero"), "unknown --scst-baseline 'zero'; choose from greedy, mean"),
    (ScstOptions(source="x", samples=0), "--scst-samples must be at least 1 (got 0)"),
    (ScstOptions(source="x", samples=1, baseline="mean"),
     "--scst-baseline mean is the mean of the other samples: it needs --scst-samples >= 2"),
    (ScstOptions(source="x", bleu_weights=[0, 0, 0, 0, 1]), "--bleu-weight takes at most 4 weights (BLEU-1..4), got 5"),
    (ScstOptions(source="x", cider_weight=0.0),
     "reward weights must be >= 0 and not all zero (--cider-weight, --bleu-weight)"),
])
def test_option_errors_say_what_is_wrong(opts: ScstOptions, message: str):
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        opts.check()


def test_leave_one_out_error_message():
    with pytest.raises(UsageError, match="^the mean baseline needs at least 2 samples per image$"):
        leave_one_out(np.ones((2, 1)))
