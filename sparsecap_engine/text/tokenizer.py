"""Tokenizers built and loaded by kind: ``word`` (:class:`Vocab`) and ``radix`` (:class:`RadixTokenizer`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from sparsecap_engine.errors import DataError, UsageError
from sparsecap_engine.text.radix import FORMAT as RADIX_FORMAT
from sparsecap_engine.text.radix import RadixTokenizer
from sparsecap_engine.text.vocab import Vocab

Tokenizer = Vocab | RadixTokenizer
KINDS = ("word", "radix")


def build_tokenizer(
    kind: str, captions: Iterable[Sequence[str]], min_count: int = 1, radix_base: int = 768
) -> Tokenizer:
    """A word vocabulary from training captions, written as words (``word``) or base-b digits (``radix``)."""
    if kind not in KINDS:
        raise UsageError(f"unknown tokenizer {kind!r}; choose from {', '.join(KINDS)}")
    vocab = Vocab.build(captions, min_count)
    return RadixTokenizer(vocab, radix_base) if kind == "radix" else vocab


def tokenizer_from_json(text: str, source: str = "tokenizer") -> Tokenizer:
    """Read either kind back from its JSON (the ``format`` field decides)."""
    try:
        fmt = json.loads(text).get("format")
    except (json.JSONDecodeError, AttributeError, TypeError):  # TypeError: not text at all (a number, a table)
        raise DataError(f"{source}: not a sparsecap tokenizer (invalid JSON)") from None
    if fmt == RADIX_FORMAT:
        return RadixTokenizer.from_json(text, source)
    return Vocab.from_json(text, source)


def load_tokenizer(path: Path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"tokenizer not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable tokenizer ({exc.__class__.__name__})") from None
    return tokenizer_from_json(text, str(path))
