"""The in-process CIDEr-D and BLEU against pycocoevalcap's ``Cider`` and ``Bleu(4)`` on the same tokens."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
from collections import Counter

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from sparsecap_engine.errors import DataError, UsageError
from sparsecap_engine.metrics.bleu import batch_bleu, bleu_scores
from sparsecap_engine.metrics.cider import CiderD, compute_cider
from sparsecap_engine.metrics.ngrams import count_ngrams

TOL = 1e-9


def make_captions(
    num: int, vocab_size: int, seed: int, max_len: int = 20
) -> tuple[dict[int, list[str]], dict[int, str]]:
    """Zipf-ish words, lengths 0..max_len, 1-5 refs, plus the odd case: empty, one repeated word, a copied reference."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(vocab_size)]
    weights = [1 / (i + 1) for i in range(vocab_size)]

    def sentence() -> str:
        r = rng.random()
        if r < 0.01:
            return ""
        length = rng.randint(1, max_len)
        if r < 0.05:
            return " ".join([rng.choice(vocab[:3])] * length)
        return " ".join(rng.choices(vocab, weights, k=length))

    refs = {i: [sentence() for _ in range(rng.randint(1, 5))] for i in range(num)}
    hyps = {i: rng.choice(refs[i]) if rng.random() < 0.03 else sentence() for i in range(num)}
    return refs, hyps


def coco_cider(refs: dict[int, list[str]], hyps: dict[int, str]) -> tuple[float, dict[int, float]]:
    score, scores = Cider().compute_score(refs, {k: [h] for k, h in hyps.items()})
    return float(score), dict(zip(refs, np.asarray(scores).tolist(), strict=True))


def coco_bleu(refs: dict[int, list[str]], hyps: dict[int, str]) -> tuple[list[float], list[list[float]]]:
    with contextlib.redirect_stdout(io.StringIO()):
        return Bleu(4).compute_score(refs, {k: [h] for k, h in hyps.items()})


@pytest.fixture(scope="module")
def big() -> tuple[dict[int, list[str]], dict[int, str]]:
    return make_captions(1200, 400, seed=0)


@pytest.mark.parametrize(("num", "vocab", "seed"), [(1, 5, 1), (2, 4, 2), (9, 12, 3), (300, 3000, 4)])
def test_cider_small_and_odd_sets_equal_pycocoevalcap(num: int, vocab: int, seed: int) -> None:
    refs, hyps = make_captions(num, vocab, seed)
    want, want_per = coco_cider(refs, hyps)
    got, got_per = compute_cider(refs, hyps)
    assert abs(got - want) < TOL
    assert list(got_per) == list(want_per)
    assert max(abs(got_per[k] - want_per[k]) for k in refs) < TOL


def test_cider_equals_pycocoevalcap_on_1200_captions(big) -> None:
    refs, hyps = big
    want, want_per = coco_cider(refs, hyps)
    got, got_per = compute_cider(refs, hyps)
    assert abs(got - want) < TOL
    assert max(abs(got_per[k] - want_per[k]) for k in refs) < TOL
    assert want > 0 and sum(v > 0 for v in want_per.values()) > 500  # the comparison is not vacuous
    cached, cached_per = CiderD.from_refs(refs).compute(None, hyps)  # df fixed from the same refs: the same scores
    assert abs(cached - want) < TOL
    assert max(abs(cached_per[k] - want_per[k]) for k in refs) < TOL


@pytest.mark.parametrize(("num", "vocab", "seed"), [(1, 5, 1), (2, 4, 2), (9, 12, 3), (300, 3000, 4)])
def test_bleu_small_and_odd_sets_equal_pycocoevalcap(num: int, vocab: int, seed: int) -> None:
    refs, hyps = make_captions(num, vocab, seed)
    want, want_per = coco_bleu(refs, hyps)
    got, got_per = bleu_scores(refs, hyps)
    assert np.abs(np.subtract(got, want)).max() < TOL
    assert np.abs(np.subtract(got_per, want_per)).max() < TOL


def test_bleu_equals_pycocoevalcap_on_1200_captions(big) -> None:
    refs, hyps = big
    want, want_per = coco_bleu(refs, hyps)
    got, got_per = bleu_scores(refs, hyps)
    assert len(got) == 4 and np.shape(got_per) == (4, len(refs))
    assert np.abs(np.subtract(got, want)).max() < TOL
    assert np.abs(np.subtract(got_per, want_per)).max() < TOL
    assert min(want) > 0


def test_bleu_closest_reference_length_ties_go_to_the_shorter() -> None:
    refs = {0: ["a b c d e f", "a b"]}  # hypothesis of 4 words: both at distance 2, pycocoevalcap picks 2
    hyps = {0: "a b x y"}
    assert np.allclose(bleu_scores(refs, hyps)[0], coco_bleu(refs, hyps)[0], rtol=0, atol=TOL)


def reference_cider(refs: dict[int, list[str]], hyps: dict[int, str], df: Counter, num_docs: float) -> dict[int, float]:
    """pycocoevalcap's CIDEr-D formula, written plainly, with a given df and document count."""

    def vec(sentence: str) -> tuple[list[dict], list[float], int]:
        words = sentence.split()
        out: list[dict] = [{} for _ in range(4)]
        for k in range(1, 5):
            for gram, tf in Counter(tuple(words[i : i + k]) for i in range(len(words) - k + 1)).items():
                out[k - 1][gram] = tf * (math.log(num_docs) - math.log(max(1.0, df[gram])))
        return out, [math.sqrt(sum(v * v for v in o.values())) for o in out], max(len(words) - 1, 0)

    scores = {}
    for key, hyp in hyps.items():
        hv, hn, hl = vec(hyp)
        total = 0.0
        for ref in refs[key]:
            rv, rn, rl = vec(ref)
            for k in range(4):
                val = sum(min(v, rv[k].get(g, 0.0)) * rv[k].get(g, 0.0) for g, v in hv[k].items())
                if hn[k] and rn[k]:
                    val /= hn[k] * rn[k]
                total += val * math.exp(-((hl - rl) ** 2) / 72) / 4
        scores[key] = total / len(refs[key]) * 10
    return scores


def test_fixed_df_from_a_larger_corpus_and_several_samples_per_image() -> None:
    corpus, _ = make_captions(400, 150, seed=7)

    def grams(sentence: str) -> set[tuple[str, ...]]:
        words = sentence.split()
        return {tuple(words[i : i + k]) for k in range(1, 5) for i in range(len(words) - k + 1)}

    df = Counter(g for refs in corpus.values() for g in set().union(*map(grams, refs)))  # images per n-gram
    scorer = CiderD.from_refs(corpus)
    assert scorer.ref_len == 400
    assert scorer.document_frequency == {" ".join(g): float(c) for g, c in df.items()}
    rng = random.Random(8)
    keys = [k for k in range(0, 400, 7) for _ in range(3)]
    hyps = [" ".join(rng.choice(corpus[k]).split()[:5] + ["zz", "w1"]) for k in keys]
    got = scorer.scores(hyps, keys)
    for key, hyp, score in zip(keys, hyps, got, strict=True):
        want = reference_cider(corpus, {key: hyp}, df, 400)[key]
        assert abs(score - want) < TOL
    batch = count_ngrams([corpus[k] for k in range(0, 400, 7)], hyps, np.repeat(np.arange(len(keys) // 3), 3))
    assert np.abs(scorer.batch_scores(batch) - got).max() < TOL
    assert np.abs(CiderD(scorer.document_frequency, 400).scores(hyps, keys, corpus) - got).max() < TOL


def test_one_count_feeds_both_cider_and_bleu(big) -> None:
    refs, hyps = big
    keys = list(hyps)[:200]
    batch = count_ngrams([refs[k] for k in keys], [hyps[k] for k in keys], np.arange(len(keys)))
    sub_refs, sub_hyps = {k: refs[k] for k in keys}, {k: hyps[k] for k in keys}
    _, per = compute_cider(sub_refs, sub_hyps)
    assert np.abs(CiderD().batch_scores(batch) - [per[k] for k in keys]).max() < TOL
    corpus, per_hyp = batch_bleu(batch)
    want, want_per = bleu_scores(sub_refs, sub_hyps)
    assert np.abs(np.subtract(corpus, want)).max() < TOL and np.abs(per_hyp.T - want_per).max() < TOL


def test_df_save_load_round_trip(tmp_path, big) -> None:
    refs, hyps = big
    scorer = CiderD.from_refs(refs)
    path = tmp_path / "cider_df.json"
    scorer.save_df(path)
    loaded = CiderD.load_df(path)
    assert loaded.ref_len == scorer.ref_len and loaded.n == scorer.n
    assert loaded.document_frequency == scorer.document_frequency
    keys = list(hyps)
    assert np.array_equal(
        loaded.scores([hyps[k] for k in keys], keys, refs), scorer.scores([hyps[k] for k in keys], keys)
    )
    data = json.loads(path.read_text())
    data["codes"][0] = data["codes"][0][::-1]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="cannot read CIDEr-D"):
        CiderD.load_df(path)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(DataError):
        CiderD.load_df(tmp_path / "junk.json")
    with pytest.raises(DataError):
        CiderD.load_df(tmp_path / "missing.json")


def test_errors() -> None:
    with pytest.raises(UsageError):
        CiderD().save_df("x.json")  # nothing fixed to save
    with pytest.raises(UsageError):
        CiderD({"a": 1})  # df without ref_len
    with pytest.raises(DataError, match="reference"):
        compute_cider({1: ["a b"]}, {2: "a b"})
    with pytest.raises(DataError, match="reference"):
        bleu_scores({1: []}, {1: "a b"})
    with pytest.raises(DataError):
        compute_cider({1: ["a"]}, {})
    assert CiderD().scores([], []).shape == (0,)
