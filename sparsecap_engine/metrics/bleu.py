"""In-process BLEU-1..n, equal to pycocoevalcap's ``Bleu(n)`` on the same tokens, corpus and per image.

For a caption c of |c| words whose closest reference length is r (ties go to the shorter reference):

    p_k    = (clipped k-gram matches + 1e-15) / (k-grams in c + 1e-9)    each k-gram clipped to its max count in a ref
    BLEU_k = (p_1 · … · p_k)^(1/k) · BP,   BP = exp(1 − 1/ρ) if ρ < 1 else 1,   ρ = (|c| + 1e-15) / (r + 1e-9)

The corpus score applies the same formula to the counts and lengths summed over all captions.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from sparsecap_engine.errors import DataError
from sparsecap_engine.metrics.ngrams import NGramBatch, count_ngrams, gather_refs

TINY, SMALL = 1e-15, 1e-9  # pycocoevalcap's constants: a zero count still scores 0, and nothing divides by zero


def _closest_ref_len(batch: NGramBatch) -> np.ndarray:
    refs, valid, _ = batch.refs_of_hyps()
    lengths = batch.ref_words[refs]
    distance = np.where(valid, np.abs(lengths - batch.hyp_words[:, None]), np.iinfo(np.int64).max)
    nearest = distance == distance.min(axis=1, initial=np.iinfo(np.int64).max)[:, None]
    return np.where(nearest, lengths, np.iinfo(np.int64).max).min(axis=1, initial=np.iinfo(np.int64).max)


def batch_bleu(batch: NGramBatch, n: int = 4) -> tuple[list[float], np.ndarray]:
    """Corpus BLEU-1..n and the (H, n) per-hypothesis scores of an already counted batch."""
    if n > batch.n:
        raise ValueError(f"batch counted {batch.n}-grams, BLEU-{n} needs more")
    hyps = len(batch.hyp_image)
    best = np.zeros(len(batch.h_tf))
    np.maximum.at(best, batch.m_hyp_entry, batch.r_tf[batch.m_ref_entry])
    order = batch.index.gram_order[batch.h_gram]
    keep = order < n
    clipped = np.minimum(batch.h_tf, best)[keep]
    correct = np.bincount(batch.h_hyp[keep] * n + order[keep], clipped, hyps * n).reshape(hyps, n)
    test_len = batch.hyp_words
    guess = np.maximum(0, test_len[:, None] - np.arange(n))
    ref_len = _closest_ref_len(batch)

    per_hyp = np.empty((hyps, n))
    bleu = np.ones(hyps)
    for k in range(n):
        bleu = bleu * ((correct[:, k] + TINY) / (guess[:, k] + SMALL))
        per_hyp[:, k] = bleu ** (1.0 / (k + 1))
    ratio = (test_len + TINY) / (ref_len + SMALL)
    short = ratio < 1
    per_hyp[short] *= np.exp(1 - 1 / ratio[short])[:, None]

    corpus, total = [], 1.0
    for k in range(n):
        total *= (int(round(correct[:, k].sum())) + TINY) / (int(guess[:, k].sum()) + SMALL)
        corpus.append(total ** (1.0 / (k + 1)))
    ratio_all = (int(test_len.sum()) + TINY) / (int(ref_len.sum()) + SMALL)
    if ratio_all < 1:
        corpus = [b * math.exp(1 - 1 / ratio_all) for b in corpus]
    return corpus, per_hyp


def bleu_scores(
    refs: Mapping[Hashable, Sequence[str]], hyps: Mapping[Hashable, str], n: int = 4
) -> tuple[list[float], list[list[float]]]:
    """Corpus BLEU-1..n and per-key scores in pycocoevalcap's layout: ``per_key[k][i]`` = BLEU-(k+1) of the i-th key."""
    if not hyps:
        raise DataError("no captions to score")
    keys = list(hyps)
    batch = count_ngrams(gather_refs(refs, keys), [hyps[k] for k in keys], np.arange(len(keys)), n)
    corpus, per_hyp = batch_bleu(batch, n)
    return corpus, per_hyp.T.tolist()
