"""A hand-made caption model for decoding tests: next-token log-probs are a fixed random table indexed by a hash of
the image and the whole prefix, so beam search can be checked against exhaustive search."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from sparsecap_engine.models.base import index_batch, repeat_batch

BOS, EOS, PAD = 2, 3, 0
M = 9973  # hash buckets (prime)


class TableModel(nn.Module):
    """Implements ``encode``/``init_state``/``step``/``reorder_state``/``expand_memory``/``forward``."""

    def __init__(
        self, vocab_size: int = 7, seed: int = 0, sharpness: float = 2.0, eos_bias: float = 0.0, markov: bool = False,
        eos: int = EOS,
    ):
        super().__init__()
        self.markov = markov  # log-probs depend on the image and the previous token only (loops are likely)
        g = torch.Generator().manual_seed(seed)
        table = torch.randn(M, vocab_size, generator=g) * sharpness
        table[:, eos] += eos_bias
        self.register_buffer("table", torch.log_softmax(table, -1))
        self.calls = 0

    def encode(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"img": batch["img"].long()}

    def init_state(self, memory: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"h": memory["img"] * 7919 % M}

    def step(self, memory, tokens: Tensor, state) -> tuple[Tensor, dict[str, Tensor]]:
        self.calls += 1
        h = (state["h"] * 31 + tokens) % M if not self.markov else (state["h"] + tokens * 31) % M
        state_h = h if not self.markov else state["h"]
        return self.table[h], {"h": state_h}

    def forward(self, memory, tokens: Tensor) -> Tensor:
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


class FakeVocab:
    """Word vocabulary of the table model: ids 4.. are words ``w4``, ``w5``, …; ``the`` is id 4."""

    pad_id, unk_id, bos_id, eos_id = PAD, 1, BOS, EOS

    def __init__(self, size: int):
        self.itos = ["<pad>", "<unk>", "<bos>", "<eos>", "the", *[f"w{i}" for i in range(5, size)]]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def decode(self, ids) -> str:
        out = []
        for i in ids:
            if int(i) == EOS:
                break
            if int(i) > 3:
                out.append(self.itos[int(i)])
        return " ".join(out)


def score(model: TableModel, img: int, seq: list[int]) -> float:
    """Summed log-prob of ``seq`` (ids after <bos>) for image ``img``."""
    h, total = img * 7919 % M, 0.0
    prev = BOS
    for tok in seq:
        if model.markov:
            total += float(model.table[(img * 7919 % M + prev * 31) % M, tok])
        else:
            h = (h * 31 + prev) % M
            total += float(model.table[h, tok])
        prev = tok
    return total


def exhaustive(model: TableModel, img: int, vocab_size: int, max_len: int, lp=lambda n: 1.0, allowed=None):
    """Best (score, seq) over every word sequence ending in <eos> within ``max_len`` tokens, or truncated at it."""
    words = [i for i in range(vocab_size) if i not in (PAD, BOS, EOS)]
    best = (-math.inf, None)
    for n in range(0, max_len + 1):
        for body in itertools.product(words, repeat=n):
            seq = [*body, EOS] if n < max_len else list(body)
            if allowed is not None and not allowed(seq):
                continue
            s = score(model, img, seq) / lp(len(seq))
            if s > best[0]:
                best = (s, seq)
    return best
