"""What a decoder may emit at each step, shared by greedy, sampling and beam search.

Every active hypothesis of a decoding loop has the same length t (finished ones are padded), so the length rules are
scalars and only the content rules look at each row's history:

- ``<bos>``/``<pad>`` are never generated;
- ``<eos>`` only at a word boundary (radix tokens: every ``digits`` tokens, COMIC/ACORT, §5.1), after at least
  ``min_words`` words, and not after a word that cannot end a caption (``a``, ``the``, ``of``, … — ruotianluo's
  ``remove_bad_endings``, reference §1.7);
- n-gram blocking: no word n-gram may occur twice (fairseq's ``no_repeat_ngram_size``, counted in words, so for radix
  tokens it works on aligned digit windows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sparsecap_engine.errors import UsageError

#: words a caption should not end with (ruotianluo's list plus a few prepositions of spatial captions)
BAD_ENDINGS: tuple[str, ...] = (
    "a", "an", "the", "in", "for", "at", "of", "with", "before", "after", "on", "upon", "near", "to", "is", "are",
    "am", "and", "or", "its", "their", "his", "her", "above", "below", "under", "beside", "behind", "next",
)  # fmt: skip

NEG_INF = float("-inf")


@dataclass
class Constraints:
    """Masks log-probs in place of a decoding step (see the module docstring)."""

    eos: int
    never: tuple[int, ...] = ()
    unit: int = 1
    min_words: int = 0
    block_ngram: int = 0
    bad_codes: Tensor | None = None  # (n_bad, unit) token ids of the words that cannot end a caption

    def __post_init__(self) -> None:
        if self.unit < 1 or self.min_words < 0 or self.block_ngram < 0:
            raise UsageError("decoding constraints need unit >= 1, min_len >= 0 and block_ngram >= 0")

    @classmethod
    def for_vocab(
        cls, vocab, min_len: int = 0, block_ngram: int = 0, bad_endings: bool = False, extra_bad: Sequence[str] = ()
    ) -> Constraints:
        """Constraints for a word ``Vocab`` or a ``RadixTokenizer`` (its ``digits`` tokens make one word)."""
        unit = int(getattr(vocab, "digits", 1) or 1)
        bad: Tensor | None = None
        if bad_endings:
            words = getattr(vocab, "words", vocab)  # the radix tokenizer's word vocabulary, or the vocabulary itself
            ids = [words.stoi[w] for w in (*BAD_ENDINGS, *extra_bad) if w in words.stoi]
            codes = [vocab.word_code(i) for i in ids] if hasattr(vocab, "word_code") else [[i] for i in ids]
            bad = torch.tensor(codes, dtype=torch.long).reshape(-1, unit)
        never = tuple(i for i in (vocab.bos_id, vocab.pad_id) if i is not None)
        return cls(vocab.eos_id, never, unit, min_len, block_ngram, bad)

    @property
    def active(self) -> bool:
        """True when anything beyond ``never`` applies (the loops skip history bookkeeping otherwise)."""
        return self.unit > 1 or self.min_words > 0 or self.block_ngram > 0 or self.bad_codes is not None

    def eos_allowed(self, t: int) -> bool:
        """May ``<eos>`` be the token at position ``t`` (t tokens generated before it)?"""
        return t % self.unit == 0 and t // self.unit >= self.min_words

    def apply(self, logp: Tensor, t: int, history: Tensor) -> Tensor:
        """``logp`` (N, V) for position ``t``; ``history`` (N, t) the tokens generated so far. Returns a masked copy."""
        logp = logp.clone()
        if self.never:
            logp[:, list(self.never)] = NEG_INF
        if not self.eos_allowed(t):
            logp[:, self.eos] = NEG_INF
        elif self.bad_codes is not None and len(self.bad_codes) and t >= self.unit:
            last = history[:, t - self.unit :]
            codes = self.bad_codes.to(history.device)
            bad = (last[:, None, :] == codes[None]).all(-1).any(-1)
            logp[:, self.eos] = logp[:, self.eos].masked_fill(bad, NEG_INF)
        if self.block_ngram > 0:
            logp = self._block(logp, t, history)
        return logp

    def _block(self, logp: Tensor, t: int, history: Tensor) -> Tensor:
        """Ban the token that would complete a word n-gram already in ``history`` (aligned windows of n·unit tokens)."""
        size = self.block_ngram * self.unit
        if t % self.unit != self.unit - 1 or t + 1 < size + self.unit or t < size:
            return logp
        windows = history.unfold(1, size, self.unit)  # (N, W, size): every complete n-word window so far
        suffix = history[:, t - size + 1 :]  # the n·unit − 1 tokens the next one would complete
        match = (windows[..., :-1] == suffix[:, None, :]).all(-1)
        hits = torch.zeros_like(logp).scatter_add_(1, windows[..., -1], match.to(logp.dtype))
        return logp.masked_fill(hits > 0, NEG_INF)
