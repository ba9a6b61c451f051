"""Numbers for people: the one convention every command's human (non ``--json``) output uses.

Sparsity and other fractions as percentages with two decimals (``95.00%``, more only when two would round a value that
is not 0 or 1 to ``0.00%`` / ``100.00%``), byte counts with decimal units (``386.12 KB``), other floats in fixed
notation (never ``1.2e-05``), and mappings as ``key: value`` text instead of a raw ``{'…': …}`` dict. ``--json``
output keeps the raw values (fractions, bytes, floats)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: the most decimals a number is ever given (below this it shows as 0 with that many decimals)
MAX_DECIMALS = 8


#: pycocoevalcap's result keys → the names human output uses everywhere (its "CIDEr" is CIDEr-D)
METRIC_LABELS = {"Bleu_1": "BLEU-1", "Bleu_2": "BLEU-2", "Bleu_3": "BLEU-3", "Bleu_4": "BLEU-4",
                 "ROUGE_L": "ROUGE-L", "CIDEr": "CIDEr-D"}


def metric_label(key: str) -> str:
    """``Bleu_4`` → ``BLEU-4``, ``ROUGE_L`` → ``ROUGE-L``, ``CIDEr`` → ``CIDEr-D``; other names as they are."""
    return METRIC_LABELS.get(key, key)


def percent(fraction: float | None, decimals: int = 2) -> str:
    """``0.95`` → ``95.00%``; ``0.99999`` → ``99.999%`` (not a false ``100.00%``); ``None``/NaN → ``–``."""
    if fraction is None or not isinstance(fraction, (int, float)) or math.isnan(fraction):
        return "–"
    value = 100.0 * float(fraction)
    d = decimals
    while d < 6 and 0.0 < abs(fraction) < 1.0 and (round(value, d) in (0.0, 100.0)):
        d += 1
    return f"{value:.{d}f}%"


def number(value: Any, decimals: int = 4, trim: bool = False) -> str:
    """A float in fixed notation: ``decimals`` decimals, more for small values so that two significant digits show
    (``0.0060``, ``0.000012``) up to :data:`MAX_DECIMALS` (below that ``0.0000``); ``trim`` drops trailing zeros
    (``0.2``); ints with thousands separators; anything else as ``str``."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    a = abs(value)
    if a == 0.0:
        return "0" if trim else f"{0.0:.{decimals}f}"
    d = decimals
    if a < 10.0 ** -decimals * 100:  # e.g. 0.0012 with 4 decimals would show one significant digit at most
        d = min(MAX_DECIMALS, max(decimals, 1 - math.floor(math.log10(a))))
    text = f"{value:.{d}f}"
    if float(text) == 0.0:  # below what MAX_DECIMALS shows: zero, at the usual precision
        return "0" if trim else f"{0.0:.{decimals}f}"
    if d > decimals or trim:
        text = text.rstrip("0").rstrip(".")
    return text


def human_bytes(n: float) -> str:
    """``154168`` → ``154.17 KB`` (decimal units, as file managers and ``ls -h --si`` show them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def key_values(mapping: Mapping[str, Any], sep: str = ", ", decimals: int | None = None) -> str:
    """``{'CIDEr-D': 0.0123, 'drop': 0.2}`` → ``CIDEr-D: 0.0123, drop: 0.2``: nested mappings in parentheses, lists
    in brackets, floats in fixed notation (``decimals``: exactly that many, as for scores; else trimmed). For one
    table cell (``sep="\\n"``) or one line."""
    return sep.join(f"{key}: {_value(value, decimals)}" for key, value in mapping.items())


def _value(value: Any, decimals: int | None) -> str:
    if isinstance(value, Mapping):
        return f"({key_values(value, decimals=decimals)})" if value else "–"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v, decimals) for v in value) + "]"
    if value is None:
        return "–"
    if decimals is not None and isinstance(value, float) and math.isfinite(value):
        return f"{value:.{decimals}f}"
    return number(value, trim=True)


__all__ = ["percent", "number", "human_bytes", "key_values"]
