"""Decoding flags shared by ``caption`` and ``eval``: one typer option per ``DecodeOptions`` field."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sparsecap_engine.decoding.api import DecodeOptions

BEAM = typer.Option(1, "--beam", "-b", help="Beam size (1 = greedy).")
SAMPLE = typer.Option(False, "--sample", help="Sample instead of greedy/beam (see --temperature, --top-k, --top-p).")
TEMPERATURE = typer.Option(1.0, "--temperature", help="Sampling temperature T (softmax(logp / T)).")
TOP_K = typer.Option(0, "--top-k", help="Sample among the k most likely tokens (0 = all).")
TOP_P = typer.Option(1.0, "--top-p", help="Nucleus sampling: the smallest set of tokens with mass ≥ p (1 = all).")
SEED = typer.Option(0, "--seed", help="Sampling seed.")
LENGTH_PENALTY = typer.Option("", "--length-penalty", help="Beam: none | wu_<α> (GNMT, e.g. wu_0.9) | avg.")
BLOCK_NGRAM = typer.Option(0, "--block-ngram", help="Never repeat a word n-gram of this size (0 = off).")
MIN_LEN = typer.Option(0, "--min-len", help="Shortest caption in words.")
BAD_ENDINGS = typer.Option(
    False, "--no-bad-endings", help="Never end a caption with a, the, of, on, … (suppress <eos> after them)."
)


def decode_options(
    beam: int,
    sample: bool,
    max_len: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    length_penalty: str = "",
    block_ngram: int = 0,
    min_len: int = 0,
    bad_endings: bool = False,
    n_best: int = 1,
) -> DecodeOptions:
    """Checked ``DecodeOptions`` from the flags (``UsageError`` on a bad combination)."""
    from sparsecap_engine.decoding.api import DecodeOptions
    from sparsecap_engine.errors import UsageError

    if sample and beam > 1:
        raise UsageError("--sample and --beam K > 1 exclude each other")
    method = "sample" if sample else ("beam" if beam > 1 else "greedy")
    return DecodeOptions(
        method=method, beam_size=max(1, beam) if method == "beam" else beam, max_len=max_len,
        temperature=temperature, seed=seed, top_k=top_k, top_p=top_p, length_penalty=length_penalty,
        block_ngram=block_ngram, min_len=min_len, bad_endings=bad_endings, n_best=n_best,
    ).check()
