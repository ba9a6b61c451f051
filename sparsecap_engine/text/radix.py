"""Radix output encoding (COMIC, Tan et al. 2019; used by ACORT): every word is ``digits`` base-``b`` tokens.

The word vocabulary (a :class:`Vocab`, ids 0..3 special, words from 4) is re-expressed as fixed-length numbers:

- slots: word id ``w >= 4`` → slot ``w - 4``; ``<unk>`` → the last slot ``V - 4`` (``n = V - 3`` slots in all);
- ``digits`` T = the fewest base-b digits that write every slot (V = 10001, b = 768 → T = 2);
- token ids: ``0`` pad, ``1..b`` the digit values 0..b-1 (``digit + 1``), ``b + 1`` BOS, ``b + 2`` EOS,
  so the model's output vocabulary has ``b + 3`` entries (771 for b = 768).

Differences from the reference (§5.1, §9 item 11): ``encode`` cuts whole words so ``<eos>`` is always kept, and
``decode`` drops an incomplete trailing word instead of padding it with zero digits. There is no single ``<unk>``
token (``unk_id`` is None): the unknown word is the digit string ``code(V - 4)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from sparsecap_engine.errors import DataError, UsageError
from sparsecap_engine.text.vocab import UNK, Vocab

FORMAT = "sparsecap-radix-1"


def digits_needed(n_slots: int, base: int) -> int:
    """Fewest base-``base`` digits that write every slot 0..n_slots-1 (at least 1)."""
    t, cap = 1, base
    while cap < n_slots:
        t, cap = t + 1, cap * base
    return t


class RadixTokenizer:
    """Word vocabulary written as base-``b`` digit strings; same interface as :class:`Vocab`."""

    kind = "radix"
    pad_id = 0
    unk_id: int | None = None  # the unknown word is a digit string, not one token

    def __init__(self, words: Vocab, base: int):
        if base < 2:
            raise UsageError(f"radix base must be at least 2 (got {base})")
        self.words = words
        self.base = int(base)
        self.bos_id = self.base + 1
        self.eos_id = self.base + 2
        self.n_slots = len(words) - 3
        #: tokens per word (T); EOS may only follow a complete word
        self.digits = digits_needed(self.n_slots, self.base)

    def __len__(self) -> int:
        return self.base + 3

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RadixTokenizer) and self.base == other.base and self.words == other.words

    def __repr__(self) -> str:
        return f"RadixTokenizer(base={self.base}, words={len(self.words)}, digits={self.digits})"

    # ----------------------------------------------------------------------------------------------- words ↔ ids
    def word_code(self, word_id: int) -> list[int]:
        """Token ids (digit + 1, most significant first) of one word id of the word vocabulary."""
        slot = word_id - 4 if word_id >= 4 else self.n_slots - 1  # specials (only <unk> is expected) → unk slot
        out = []
        for _ in range(self.digits):
            slot, d = divmod(slot, self.base)
            out.append(d + 1)
        return out[::-1]

    def code_word(self, code: Sequence[int]) -> str:
        """The word of ``digits`` token ids; values past the vocabulary are ``<unk>``."""
        slot = 0
        for tok in code:
            slot = slot * self.base + (int(tok) - 1)
        word_id = slot + 4
        return self.words.itos[word_id] if word_id < len(self.words) else UNK

    def is_word_end(self, n_digits: int) -> bool:
        """True when ``n_digits`` emitted digit tokens (after ``<bos>``) end a word: EOS is allowed there."""
        return n_digits % self.digits == 0

    def encode(self, tokens: Sequence[str], max_len: int) -> list[int]:
        """``[<bos>, digits of w1..wn, <eos>]`` with at most ``max_len`` ids: whole words are cut, ``<eos>`` kept."""
        n_words = (max_len - 2) // self.digits
        if n_words < 1:
            raise ValueError(f"max_len {max_len} leaves no room for one {self.digits}-digit word")
        ids = [self.bos_id]
        for w in tokens[:n_words]:
            ids += self.word_code(self.words.stoi.get(w, self.words.unk_id))
        return ids + [self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first ``<eos>``; ``<bos>``/``<pad>`` skipped; an incomplete last word is dropped."""
        digits: list[int] = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if 1 <= i <= self.base:
                digits.append(i)
        t = self.digits
        return " ".join(self.code_word(digits[k : k + t]) for k in range(0, len(digits) - t + 1, t))

    # -------------------------------------------------------------------------------------------- persistence
    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "base": self.base, "itos": self.words.itos})

    @classmethod
    def from_json(cls, text: str, source: str = "tokenizer") -> RadixTokenizer:
        try:
            data = json.loads(text)
            base, itos = int(data["base"]), data["itos"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source}: not a sparsecap radix tokenizer ({exc.__class__.__name__})") from None
        return cls(Vocab.from_json(json.dumps({"itos": itos}), source), base)

    def save(self, path: Path) -> None:
        from sparsecap_engine.atomic import atomic_write_text

        atomic_write_text(Path(path), self.to_json())
