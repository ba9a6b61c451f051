"""In-process CIDEr-D, equal to pycocoevalcap's ``Cider`` on the same tokens, fast enough for per-batch SCST rewards.

CIDEr-D of a caption c against the references s_1..s_m of its image (Vedantam et al. 2015, as coco-caption computes it):

    g_k(x)_w = tf_w(x) · (log N − log max(1, df_w))   tf-idf of k-gram w; N images, df_w = images whose refs contain w
    CIDEr-D  = 10/m · Σ_j 1/n Σ_k [Σ_w min(g_k(c)_w, g_k(s_j)_w) · g_k(s_j)_w] / (‖g_k(c)‖ ‖g_k(s_j)‖) · exp(−δ²/2σ²)

with n = 4, σ = 6, a zero norm skipping the division, and δ the length difference counted as pycocoevalcap counts it: in
bigrams. By default df and N come from the references being scored (pycocoevalcap's behaviour); a fixed corpus, e.g. the
training references, can be given instead and cached as JSON.

Speed comes from n-grams as integers: words get ids, a k-gram is coded as rank(its (k−1)-gram prefix) · W + id(its last
word), and counting, matching and summing are numpy sorts, searches and bincounts over the whole batch.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np

from sparsecap_engine.atomic import atomic_write_text
from sparsecap_engine.errors import DataError, UsageError

DF_FORMAT = "sparsecap-cider-df-1"
_SEP = " \x00 "  # sentence separator for the joined split; never a word of tokenised text


@dataclass(eq=False)
class NGramIndex:
    """Every distinct 1..n-gram of some sentences, as integers.

    ``words[i]`` has id i. ``codes[k-1]`` holds the k-grams, sorted and unique: a unigram's code is its word id, a
    k-gram's is ``rank of its (k-1)-gram prefix * len(words) + id of its last word``. A gram's id is its rank plus
    ``offsets[k-1]``.
    """

    words: list[str]
    codes: list[np.ndarray]

    @cached_property
    def word_ids(self) -> dict[str, int]:
        return dict(zip(self.words, range(len(self.words)), strict=True))

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([len(c) for c in self.codes])]).astype(np.int64)

    @cached_property
    def gram_order(self) -> np.ndarray:
        """Order − 1 of every gram id."""
        return np.repeat(np.arange(len(self.codes)), [len(c) for c in self.codes])

    @property
    def size(self) -> int:
        return int(self.offsets[-1])

    def strings(self) -> list[str]:
        """Every gram as space-joined words, in id order."""
        width = len(self.words)
        per_order = [list(self.words)]
        for codes in self.codes[1:]:
            prefixes, pairs = per_order[-1], zip((codes // width).tolist(), (codes % width).tolist(), strict=True)
            per_order.append([f"{prefixes[p]} {self.words[w]}" for p, w in pairs])
        return list(chain.from_iterable(per_order))

    def lookup(self, other: NGramIndex) -> np.ndarray:
        """The id in ``other`` of each of this index's grams, −1 where ``other`` lacks it."""
        ids = other.word_ids
        word_map = np.fromiter((ids.get(w, -1) for w in self.words), np.int64, len(self.words))
        width, other_width = len(self.words), len(other.words)
        rank = word_map
        found = [rank]
        for k in range(2, len(self.codes) + 1):
            codes = self.codes[k - 1]
            rank = np.full(len(codes), -1, np.int64)
            if k <= len(other.codes) and len(other.codes[k - 1]) and len(codes):
                prefix, last = found[-1][codes // width], word_map[codes % width]
                known = (prefix >= 0) & (last >= 0)
                query = prefix * other_width + last
                table = other.codes[k - 1]
                at = np.minimum(np.searchsorted(table, query), len(table) - 1)
                hit = known & (table[at] == query)
                rank[hit] = at[hit]
            found.append(rank)
        offsets = other.offsets
        return np.concatenate(
            [np.where(r >= 0, r + (offsets[k] if k < len(offsets) else 0), -1) for k, r in enumerate(found)]
        )


def _dense_rank(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each value of ``x`` among its distinct values (0 = smallest), and those sorted distinct values."""
    order = np.argsort(x)
    xs = x[order]
    new = np.ones(len(x), bool)
    new[1:] = xs[1:] != xs[:-1]
    ranks = np.empty(len(x), np.int64)
    ranks[order] = np.cumsum(new) - 1
    return ranks, xs[new]


def _tokens(sentences: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Vocabulary (first-seen order), word id of every token, word count of every sentence."""
    flat = _SEP.join(sentences).split()  # one split for all: far faster than one per sentence
    words = list(dict.fromkeys(chain([_SEP.strip()], flat)))
    ids = np.fromiter(map(dict(zip(words, range(len(words)), strict=True)).__getitem__, flat), np.int64, len(flat))
    cuts = np.flatnonzero(ids == 0)
    if len(cuts) != max(len(sentences) - 1, 0):  # a sentence holds the separator as a word: split one by one
        split = [s.split() for s in sentences]
        lengths = np.fromiter(map(len, split), np.int64, len(split))
        flat = list(chain.from_iterable(split))
        words = list(dict.fromkeys(flat))
        ids = np.fromiter(map(dict(zip(words, range(len(words)), strict=True)).__getitem__, flat), np.int64, len(flat))
        return words, ids, lengths
    lengths = np.diff(np.concatenate([[-1], cuts, [len(ids)]])) - 1 if sentences else np.zeros(0, np.int64)
    return words[1:], ids[ids != 0] - 1, lengths


def index_ngrams(sentences: Sequence[str], n: int) -> tuple[NGramIndex, np.ndarray, np.ndarray, np.ndarray]:
    """Index the 1..n-grams of whitespace-tokenised ``sentences``.

    Returns the index, then for every n-gram occurrence its sentence and gram id, then each sentence's word count.
    """
    words, tokens, lengths = _tokens(sentences)
    width = max(len(words), 1)

    sentence = np.repeat(np.arange(len(lengths)), lengths)
    left = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(tokens))  # tokens from here to the sentence's end
    codes, occ_sentence, occ_rank = [], [], []
    prefix_rank = tokens  # rank of the (k-1)-gram starting at each token, valid where it fits in its sentence
    for k in range(1, n + 1):
        start = np.flatnonzero(left >= k)
        if k == 1:
            rank, distinct = tokens, np.arange(len(words), dtype=np.int64)
        else:
            rank, distinct = _dense_rank(prefix_rank[start] * width + tokens[start + k - 1])
            prefix_rank = np.empty(len(tokens), np.int64)
            prefix_rank[start] = rank
        codes.append(distinct)
        occ_sentence.append(sentence[start])
        occ_rank.append(rank)
    index = NGramIndex(words, codes)
    offsets = index.offsets
    occ_gram = np.concatenate([r + offsets[k] for k, r in enumerate(occ_rank)])
    return index, np.concatenate(occ_sentence), occ_gram, lengths


@dataclass
class NGramBatch:
    """N-gram counts of hypotheses and of their images' references, matched gram by gram (ids local to the batch).

    Reference entries (``r_*``) are sorted by (image, gram, reference); ``r_ref`` indexes all references of the batch,
    the references of image i being ``ref_start[i]:ref_start[i + 1]``. ``m_hyp_entry[t], m_ref_entry[t]`` are the t-th
    pair of a hypothesis entry and a reference entry with the same image and gram.
    """

    n: int
    index: NGramIndex
    ref_start: np.ndarray
    ref_words: np.ndarray
    r_image: np.ndarray
    r_gram: np.ndarray
    r_ref: np.ndarray
    r_tf: np.ndarray
    hyp_image: np.ndarray
    hyp_words: np.ndarray
    h_hyp: np.ndarray
    h_gram: np.ndarray
    h_tf: np.ndarray
    m_hyp_entry: np.ndarray
    m_ref_entry: np.ndarray

    @property
    def num_images(self) -> int:
        return len(self.ref_start) - 1

    @property
    def max_refs(self) -> int:
        return int(np.diff(self.ref_start).max(initial=1))

    def refs_of_hyps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(H, max_refs) reference indices of each hypothesis's image (0 where padded), the padding mask, the counts."""
        first = self.ref_start[self.hyp_image]
        count = self.ref_start[self.hyp_image + 1] - first
        valid = np.arange(self.max_refs) < count[:, None]
        return np.where(valid, first[:, None] + np.arange(self.max_refs), 0), valid, count


def count_ngrams(
    refs_per_image: Sequence[Sequence[str]], hyps: Sequence[str], hyp_image: Sequence[int] | np.ndarray, n: int = 4
) -> NGramBatch:
    """Count and match the n-grams of ``hyps`` (hypothesis h is of image ``hyp_image[h]``) and of the references."""
    num_refs = np.fromiter(map(len, refs_per_image), np.int64, len(refs_per_image))
    if len(num_refs) and num_refs.min() == 0:
        raise ValueError("every image needs at least one reference")
    ref_start = np.concatenate([[0], np.cumsum(num_refs)]).astype(np.int64)
    hyp_image = np.asarray(hyp_image, np.int64).reshape(-1)
    total_refs = int(ref_start[-1])
    index, occ_sentence, occ_gram, lengths = index_ngrams([*chain.from_iterable(refs_per_image), *hyps], n)
    grams, max_refs = max(index.size, 1), int(num_refs.max(initial=1))
    if len(num_refs) * grams * max_refs >= 2**62:
        raise ValueError("batch too large for 64-bit n-gram keys")

    is_ref = occ_sentence < total_refs
    ref_sentence = occ_sentence[is_ref]
    ref_image_of = np.repeat(np.arange(len(num_refs)), num_refs)
    image = ref_image_of[ref_sentence]
    keys, r_tf = np.unique(
        (image * grams + occ_gram[is_ref]) * max_refs + ref_sentence - ref_start[image], return_counts=True
    )
    image_gram = keys // max_refs
    r_image, r_gram = image_gram // grams, image_gram % grams
    r_ref = ref_start[r_image] + keys % max_refs

    hkeys, h_tf = np.unique((occ_sentence[~is_ref] - total_refs) * grams + occ_gram[~is_ref], return_counts=True)
    h_hyp, h_gram = hkeys // grams, hkeys % grams
    query = hyp_image[h_hyp] * grams + h_gram
    lo, hi = np.searchsorted(image_gram, query, "left"), np.searchsorted(image_gram, query, "right")
    count = hi - lo
    m_hyp_entry = np.repeat(np.arange(len(h_hyp)), count)
    m_ref_entry = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count - lo, count)
    return NGramBatch(
        n=n,
        index=index,
        ref_start=ref_start,
        ref_words=lengths[:total_refs],
        r_image=r_image,
        r_gram=r_gram,
        r_ref=r_ref,
        r_tf=r_tf.astype(np.float64),
        hyp_image=hyp_image,
        hyp_words=lengths[total_refs:],
        h_hyp=h_hyp,
        h_gram=h_gram,
        h_tf=h_tf.astype(np.float64),
        m_hyp_entry=m_hyp_entry,
        m_ref_entry=m_ref_entry,
    )


def gather_refs(refs: Mapping[Hashable, Sequence[str]], keys: Sequence[Hashable]) -> list[list[str]]:
    """The references of each key, checked: a list of at least one string."""
    out = []
    for key in keys:
        group = refs.get(key)
        if isinstance(group, str) or not group:
            raise DataError(f"image {key!r} needs a non-empty list of reference captions")
        out.append(list(group))
    return out


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
