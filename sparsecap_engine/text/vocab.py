"""Word vocabulary: count threshold, the four special tokens, encode/decode with truncation that keeps ``<eos>``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from sparsecap_engine.errors import DataError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)


class Vocab:
    """Word ↔ id map. Ids 0..3 are ``<pad> <unk> <bos> <eos>``; words follow by count, then alphabetically."""

    def __init__(self, words: Sequence[str]):
        self.itos: list[str] = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    @classmethod
    def build(cls, captions: Iterable[Sequence[str]], min_count: int = 1) -> Vocab:
        """Keep words seen at least ``min_count`` times in the training captions."""
        counts = Counter(w for cap in captions for w in cap)
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(words)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def encode(self, tokens: Sequence[str], max_len: int) -> list[int]:
        """``[<bos>, w1..wn, <eos>]`` with at most ``max_len`` ids in all: words are cut, ``<eos>`` is always kept."""
        if max_len < 3:
            raise ValueError("max_len must leave room for <bos>, one word and <eos>")
        ids = [self.stoi.get(w, self.unk_id) for w in tokens][: max_len - 2]
        return [self.bos_id, *ids, self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first ``<eos>``; ``<bos>``/``<pad>`` skipped."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.bos_id, self.pad_id):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return " ".join(words)

    def to_json(self) -> str:
        return json.dumps({"format": "sparsecap-vocab-1", "itos": self.itos})

    @classmethod
    def from_json(cls, text: str, source: str = "vocabulary") -> Vocab:
        try:
            data = json.loads(text)
            itos = data["itos"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{source}: not a sparsecap vocabulary ({exc.__class__.__name__})") from None
        if list(itos[:4]) != list(SPECIALS):
            raise DataError(f"{source}: vocabulary does not start with {' '.join(SPECIALS)}")
        return cls(itos[4:])

    def save(self, path: Path) -> None:
        from sparsecap_engine.atomic import atomic_write_text

        atomic_write_text(Path(path), self.to_json())  # unchanged on resume: left alone

    @classmethod
    def load(cls, path: Path) -> Vocab:
        if not path.is_file():
            raise DataError(f"vocabulary not found: {path}")
        return cls.from_json(path.read_text(), str(path))
