"""N-grams as integers, for the in-process CIDEr-D and BLEU: words get ids, a k-gram is coded as rank(its (k−1)-gram
prefix) · W + id(its last word), and counting and matching are numpy sorts, searches and bincounts over a batch."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain

import numpy as np

from sparsecap_engine.errors import DataError

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
