"""In-process CIDEr-D, equal to pycocoevalcap's ``Cider`` on the same tokens, fast enough for per-batch SCST rewards.

CIDEr-D of a caption c against the references s_1..s_m of its image (Vedantam et al. 2015, as coco-caption computes it):

    g_k(x)_w = tf_w(x) · (log N − log max(1, df_w))   tf-idf of k-gram w; N images, df_w = images whose refs contain w
    CIDEr-D  = 10/m · Σ_j 1/n Σ_k [Σ_w min(g_k(c)_w, g_k(s_j)_w) · g_k(s_j)_w] / (‖g_k(c)‖ ‖g_k(s_j)‖) · exp(−δ²/2σ²)

with n = 4, σ = 6, a zero norm skipping the division, and δ the length difference counted as pycocoevalcap counts it: in
bigrams. By default df and N come from the references being scored (pycocoevalcap's behaviour); a fixed corpus, e.g. the
training references, can be given instead and cached as JSON.

Speed comes from n-grams as integers: words get ids, a k-gram is coded as rank(its (k−1)-gram prefix) · W + id(its last
word) (``ngrams.py``), and counting, matching and summing are numpy sorts, searches and bincounts over the batch.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsecap_engine.atomic import atomic_write_text
from sparsecap_engine.errors import DataError, UsageError
from sparsecap_engine.metrics.ngrams import NGramBatch, NGramIndex, count_ngrams, gather_refs, index_ngrams

DF_FORMAT = "sparsecap-cider-df-1"


def batch_document_frequency(batch: NGramBatch) -> np.ndarray:
    """For every gram id, the number of images whose references contain it (pycocoevalcap's df)."""
    image_gram = batch.r_image * max(batch.index.size, 1) + batch.r_gram
    first = np.ones(len(image_gram), bool)
    first[1:] = image_gram[1:] != image_gram[:-1]
    return np.bincount(batch.r_gram[first], minlength=batch.index.size).astype(np.float64)


def cider_d(batch: NGramBatch, df: np.ndarray, num_docs: float, sigma: float = 6.0) -> np.ndarray:
    """CIDEr-D of every hypothesis of ``batch`` given the df of each gram id and the number of documents."""
    n, hyps = batch.n, len(batch.hyp_image)
    idf = np.log(float(num_docs)) - np.log(np.maximum(1.0, df))
    order = batch.index.gram_order
    r_order, h_order = order[batch.r_gram], order[batch.h_gram]
    r_vec, h_vec = batch.r_tf * idf[batch.r_gram], batch.h_tf * idf[batch.h_gram]
    ref_norm = np.sqrt(np.bincount(batch.r_ref * n + r_order, r_vec * r_vec, len(batch.ref_words) * n))
    hyp_norm = np.sqrt(np.bincount(batch.h_hyp * n + h_order, h_vec * h_vec, hyps * n)).reshape(hyps, 1, n)

    max_refs = batch.max_refs
    h_entry, r_entry = batch.m_hyp_entry, batch.m_ref_entry
    clipped = np.minimum(h_vec[h_entry], r_vec[r_entry]) * r_vec[r_entry]
    local_ref = batch.r_ref[r_entry] - batch.ref_start[batch.r_image[r_entry]]
    cell = (batch.h_hyp[h_entry] * max_refs + local_ref) * n + h_order[h_entry]
    val = np.bincount(cell, clipped, hyps * max_refs * n).reshape(hyps, max_refs, n)

    refs, valid, count = batch.refs_of_hyps()
    ref_norm = ref_norm.reshape(-1, n)[refs]
    both = (hyp_norm != 0) & (ref_norm != 0)
    val = np.where(both, val / np.where(both, hyp_norm * ref_norm, 1.0), val)
    if n >= 2:  # pycocoevalcap's length: the number of bigrams
        hyp_len, ref_len = np.maximum(batch.hyp_words - 1, 0), np.maximum(batch.ref_words - 1, 0)
    else:
        hyp_len, ref_len = np.zeros_like(batch.hyp_words), np.zeros_like(batch.ref_words)
    delta = (hyp_len[:, None] - ref_len[refs]).astype(np.float64)
    val = val * (np.e ** (-(delta**2) / (2 * sigma**2)))[..., None] * valid[..., None]
    return val.sum(axis=1).mean(axis=1) / count * 10.0


@dataclass
class _DocFreq:
    index: NGramIndex
    counts: np.ndarray
    num_docs: float

    def of(self, index: NGramIndex) -> np.ndarray:
        ids = index.lookup(self.index)
        return np.where(ids >= 0, self.counts[np.maximum(ids, 0)] if len(self.counts) else 0.0, 0.0)


class CiderD:
    """CIDEr-D scorer (σ = 6, ×10). Document frequencies: from the scored references (``CiderD()``, pycocoevalcap's
    behaviour) or fixed (``CiderD(df, ref_len)``, ``CiderD.from_refs(corpus)``, ``CiderD.load_df(path)``).

    ``df`` maps an n-gram (space-joined words or a tuple) to the number of images whose references contain it;
    ``ref_len`` is the number of images it was counted over (idf uses ``log(ref_len)``, as coco-caption's pickles do).
    """

    def __init__(
        self,
        df: Mapping[str | tuple[str, ...], float] | None = None,
        ref_len: float | None = None,
        *,
        n: int = 4,
        sigma: float = 6.0,
    ):
        if (df is None) != (ref_len is None):
            raise UsageError("CiderD needs document frequencies and ref_len together, or neither")
        if n < 1 or sigma <= 0:
            raise UsageError(f"CiderD needs n >= 1 and sigma > 0 (got n={n}, sigma={sigma})")
        self.n, self.sigma = n, float(sigma)
        self._df = None if df is None or ref_len is None else self._df_from_mapping(df, float(ref_len))
        self._refs: dict[Hashable, list[str]] = {}

    def _df_from_mapping(self, df: Mapping[str | tuple[str, ...], float], num_docs: float) -> _DocFreq:
        grams = [g if isinstance(g, str) else " ".join(g) for g in df]
        index, occ_sentence, occ_gram, lengths = index_ngrams(grams, self.n)
        if len(lengths) and (lengths.min() < 1 or lengths.max() > self.n):
            raise UsageError(f"document frequencies must be of 1..{self.n}-grams")
        whole = index.gram_order[occ_gram] + 1 == lengths[occ_sentence]
        counts = np.zeros(index.size)
        counts[occ_gram[whole]] = np.fromiter(df.values(), np.float64, len(df))[occ_sentence[whole]]
        return _DocFreq(index, counts, num_docs)

    @classmethod
    def from_refs(cls, refs: Mapping[Hashable, Sequence[str]], *, n: int = 4, sigma: float = 6.0) -> CiderD:
        """Fix df and ref_len from ``refs`` (one document per image) and keep ``refs`` for scoring hypotheses alone."""
        if not refs:
            raise UsageError("CiderD.from_refs needs at least one image's references")
        scorer = cls(n=n, sigma=sigma)
        batch = count_ngrams(gather_refs(refs, list(refs)), [], [], n)
        scorer._df = _DocFreq(batch.index, batch_document_frequency(batch), float(len(refs)))
        scorer._refs = {k: list(v) for k, v in refs.items()}
        return scorer

    @property
    def ref_len(self) -> float | None:
        """Number of images the fixed df was counted over (None when df comes from the scored references)."""
        return None if self._df is None else self._df.num_docs

    @property
    def document_frequency(self) -> dict[str, float] | None:
        """The fixed df as ``{"space joined n-gram": count}`` (None when df comes from the scored references)."""
        if self._df is None:
            return None
        keep = np.flatnonzero(self._df.counts > 0)
        strings = self._df.index.strings()
        return {strings[i]: float(c) for i, c in zip(keep.tolist(), self._df.counts[keep].tolist(), strict=True)}

    def scores(
        self, hyps: Sequence[str], keys: Sequence[Hashable], refs: Mapping[Hashable, Sequence[str]] | None = None
    ) -> np.ndarray:
        """CIDEr-D of each hypothesis against the references of its key; keys may repeat (several samples per image).

        ``refs`` default to those given to ``from_refs``.
        """
        if len(hyps) != len(keys):
            raise ValueError("hyps and keys must have the same length")
        if not keys:
            return np.zeros(0)
        images = list(dict.fromkeys(keys))
        position = {k: i for i, k in enumerate(images)}
        hyp_image = np.fromiter((position[k] for k in keys), np.int64, len(keys))
        batch = count_ngrams(gather_refs(self._refs if refs is None else refs, images), hyps, hyp_image, self.n)
        return self.batch_scores(batch)

    def batch_scores(self, batch: NGramBatch) -> np.ndarray:
        """CIDEr-D of every hypothesis of an already counted batch (count once, score CIDEr-D and BLEU)."""
        if batch.n != self.n:
            raise ValueError(f"batch counted {batch.n}-grams, scorer uses n={self.n}")
        if self._df is None:
            return cider_d(batch, batch_document_frequency(batch), batch.num_images, self.sigma)
        return cider_d(batch, self._df.of(batch.index), self._df.num_docs, self.sigma)

    def compute(
        self, refs: Mapping[Hashable, Sequence[str]] | None, hyps: Mapping[Hashable, str]
    ) -> tuple[float, dict[Hashable, float]]:
        """Corpus CIDEr-D (the mean) and per-key scores, one hypothesis per key (pycocoevalcap's ``Cider`` layout)."""
        if not hyps:
            raise DataError("no captions to score")
        keys = list(hyps)
        per_key = self.scores([hyps[k] for k in keys], keys, refs)
        return float(np.mean(per_key)), dict(zip(keys, per_key.tolist(), strict=True))

    def save_df(self, path: str | Path) -> None:
        """Write the fixed df and ref_len as JSON: ``words``, the k-gram ``codes`` for k >= 2 (see ``NGramIndex``) and
        ``df`` per gram id, so loading a training corpus's df takes a moment, not a recount."""
        if self._df is None:
            raise UsageError("this CiderD takes df from the scored references; there is nothing fixed to save")
        counts = self._df.counts
        data = {
            "format": DF_FORMAT,
            "n": self.n,
            "ref_len": self._df.num_docs,
            "words": self._df.index.words,
            "codes": [c.tolist() for c in self._df.index.codes[1:]],
            "df": counts.astype(np.int64).tolist() if np.all(counts == np.round(counts)) else counts.tolist(),
        }
        atomic_write_text(Path(path), json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    @classmethod
    def load_df(cls, path: str | Path, *, sigma: float = 6.0) -> CiderD:
        """A scorer with the df and ref_len written by ``save_df``."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != DF_FORMAT:
                raise ValueError(f"not a {DF_FORMAT} file")
            n, words = int(data["n"]), [str(w) for w in data["words"]]
            codes = [np.arange(len(words), dtype=np.int64)] + [np.asarray(c, np.int64) for c in data["codes"]]
            counts = np.asarray(data["df"], np.float64)
            index = NGramIndex(words, codes)
            width = max(len(words), 1)
            if len(codes) != n or len(counts) != index.size or len(set(words)) != len(words):
                raise ValueError("words, codes and df do not fit together")
            for prev, c in zip(codes, codes[1:], strict=False):
                if len(c) and (np.any(np.diff(c) <= 0) or c[0] < 0 or c[-1] // width >= len(prev)):
                    raise ValueError("n-gram codes are not sorted or point nowhere")
            scorer = cls(n=n, sigma=sigma)
            scorer._df = _DocFreq(index, counts, float(data["ref_len"]))
            return scorer
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"cannot read CIDEr-D document frequencies from {path}: {e}") from e


def compute_cider(
    refs: Mapping[Hashable, Sequence[str]], hyps: Mapping[Hashable, str]
) -> tuple[float, dict[Hashable, float]]:
    """pycocoevalcap's CIDEr (CIDEr-D, df from the references of the scored keys): corpus mean and per-key scores."""
    return CiderD().compute(refs, hyps)
