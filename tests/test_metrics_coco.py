"""``evaluate_captions`` against direct pycocoevalcap calls (real Java), metric subsets, and its failure modes."""

from __future__ import annotations

import contextlib
import gc
import io
import os
import shutil
import subprocess
import threading

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from sparsecap_engine.errors import DataError, JavaMissingError, UsageError
from sparsecap_engine.metrics import coco
from sparsecap_engine.metrics.coco import METRICS, evaluate_captions, ptb_tokenize, resolve_metrics

REFS = {
    101: ["A man is riding a horse on the beach.", "A person rides a brown horse, near the sea!", "Horse and rider."],
    202: ["Two dogs play in the snow.", "Dogs playing outside -- in winter."],
    303: ["A plate of food with broccoli and rice.", "Broccoli, rice and chicken on a white plate."],
    404: ["A red bus on a city street.", "The double-decker bus is red.", "A bus drives down the road.", "Red bus"],
    505: ["A cat sleeping on a laptop keyboard.", 'The cat says "hello" to the computer.'],
}
HYPS = {
    101: "A man riding a horse on a beach.",
    202: "two dogs playing in the snow",
    303: "A plate with rice and broccoli",
    404: "a red bus driving down a street",
    505: "",
}


def direct(refs: dict[int, list[str]], hyps: dict[int, str]) -> dict[str, tuple[float, list[float]]]:
    """What pycocoevalcap's COCOEvalCap does, minus SPICE."""
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in refs[k]] for k in hyps})
    res = tokenizer.tokenize({k: [{"caption": hyps[k]}] for k in hyps})
    out: dict[str, tuple[float, list[float]]] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        score, scores = Bleu(4).compute_score(gts, res)
    for k in range(4):
        out[f"Bleu_{k + 1}"] = (score[k], scores[k])
    for name, scorer in (("METEOR", Meteor()), ("ROUGE_L", Rouge()), ("CIDEr", Cider())):
        score, scores = scorer.compute_score(gts, res)
        out[name] = (float(score), list(np.asarray(scores, dtype=float)))
    return out


def test_equal_to_calling_pycocoevalcap_directly(capfd) -> None:
    result = evaluate_captions(REFS, HYPS)
    assert capfd.readouterr() == ("", "")  # pycocoevalcap's and Java's chatter stay out of the CLI output
    want = direct(REFS, HYPS)
    assert list(result.corpus) == list(METRICS)
    assert list(result.per_image) == list(HYPS)
    for name, (score, scores) in want.items():
        assert result.corpus[name] == pytest.approx(score, abs=1e-12), name
        got = [result.per_image[k][name] for k in HYPS]
        assert np.allclose(got, scores, rtol=0, atol=1e-12), name
    assert 0 < result.corpus["METEOR"] < 1 and result.corpus["CIDEr"] > 0
    assert ("SPICE" in result.unavailable) == (coco.spice_missing() is not None)


def test_tokenizer_matches_ptbtokenizer_and_keeps_lines_aligned() -> None:
    captions = {1: ['A man, riding a "horse".', "", "Café au lait -- très bon!"], 2: ["Hello\rworld"], 3: ["The end."]}
    ours = ptb_tokenize(captions)
    theirs = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items() if k != 2})
    assert {k: v for k, v in ours.items() if k != 2} == theirs
    assert ours[2] == ["hello world"] and ours[3] == [
        "the end"
    ]  # a \r would shift every later caption in pycocoevalcap


def test_metric_subsets_and_order() -> None:
    result = evaluate_captions(REFS, HYPS, ["CIDEr", "bleu"])
    assert list(result.corpus) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr"]
    assert set(result.per_image[101]) == set(result.corpus) and result.unavailable == {}
    only = evaluate_captions(REFS, HYPS, ["bleu-2", "Rouge"])
    assert list(only.corpus) == ["Bleu_2", "ROUGE_L"]
    assert only.corpus["Bleu_2"] == result.corpus["Bleu_2"]


def test_resolve_metrics() -> None:
    assert resolve_metrics(None) == list(METRICS)
    assert resolve_metrics(["SPICE", "meteor", "Bleu_4", "bleu1", "cider_d", "ROUGE_L"]) == [
        "Bleu_1",
        "Bleu_4",
        "METEOR",
        "ROUGE_L",
        "CIDEr",
        "SPICE",
    ]
    with pytest.raises(UsageError, match="unknown metric 'bertscore'"):
        resolve_metrics(["bleu", "bertscore"])
    with pytest.raises(UsageError):
        resolve_metrics([])
    with pytest.raises(UsageError):
        evaluate_captions(REFS, HYPS, ["wer"])


def test_spice_unavailable_without_corenlp_jars(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(coco, "spice_jars", lambda: [tmp_path / "stanford-corenlp-3.6.0.jar"])
    result = evaluate_captions(REFS, HYPS, ["spice", "bleu_1"])
    assert result.corpus == {"Bleu_1": pytest.approx(result.corpus["Bleu_1"]), "SPICE": None}
    assert result.unavailable == {"SPICE": coco.SPICE_MISSING}
    assert coco.SPICE_MISSING == "SPICE needs Stanford CoreNLP 3.6.0 jars, which are not installed (no download here)"
    assert "SPICE" not in result.per_image[101]


def test_spice_on_this_machine_reports_its_reason() -> None:
    if coco.spice_missing() is None:
        pytest.skip("Stanford CoreNLP jars are installed here")
    result = evaluate_captions(REFS, HYPS, ["spice"])
    assert result.corpus == {"SPICE": None} and result.unavailable["SPICE"] == coco.SPICE_MISSING


def test_spice_that_fails_is_unavailable_with_its_first_line(monkeypatch) -> None:
    class BrokenSpice:
        def compute_score(self, gts, res):
            raise subprocess.CalledProcessError(1, ["java", "-jar", "spice-1.0.jar"], stderr="boom\nmore")

    monkeypatch.setattr(coco, "spice_missing", lambda: None)
    monkeypatch.setattr(coco, "Spice", BrokenSpice)
    result = evaluate_captions(REFS, HYPS, ["spice"])
    assert result.corpus == {"SPICE": None}
    assert result.unavailable["SPICE"].startswith("SPICE failed: Command ")
    assert "\n" not in result.unavailable["SPICE"]


def test_java_missing(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaMissingError) as info:
        evaluate_captions(REFS, HYPS, ["cider"])
    assert str(info.value) == "Java was not found on PATH; pycocoevalcap needs it (run `sparsecap doctor`)"
    with pytest.raises(JavaMissingError):
        ptb_tokenize({1: ["a dog"]})


def test_bad_input() -> None:
    with pytest.raises(DataError, match="image 999"):
        evaluate_captions(REFS, {999: "a dog"}, ["bleu"])
    with pytest.raises(DataError):
        evaluate_captions(REFS, {}, ["bleu"])


class FakeProc:
    """Enough of ``subprocess.Popen`` for ``_close_meteor``; ``kill`` unblocks a hanging fake METEOR."""

    def __init__(self) -> None:
        self.killed = threading.Event()
        self.stdin, self.stdout, self.stderr = io.BytesIO(), io.BytesIO(), io.BytesIO()

    def kill(self) -> None:
        self.killed.set()

    def wait(self, timeout: float | None = None) -> int:
        return -9

    def poll(self) -> None:
        return None


def fake_meteor(behaviour: list[str]):
    """A Meteor class whose successive instances fail ("fail"), hang until killed ("hang") or score 0.5 ("ok")."""
    created: list[object] = []

    class FakeMeteor:
        def __init__(self) -> None:
            self.meteor_p, self.lock = FakeProc(), threading.Lock()
            self.mode = behaviour[len(created)]
            created.append(self)

        def compute_score(self, gts, res):
            self.lock.acquire()  # like the real one, an error leaves the lock held
            if self.mode == "hang":
                self.meteor_p.killed.wait(10)
            if self.mode != "ok":
                raise ValueError("could not convert string to float: ''\nsecond line")
            self.lock.release()
            return 0.5, [0.5] * len(gts)

    return FakeMeteor, created


def test_meteor_retried_once(monkeypatch) -> None:
    cls, created = fake_meteor(["fail", "ok"])
    monkeypatch.setattr(coco, "Meteor", cls)
    result = evaluate_captions(REFS, HYPS, ["meteor"])
    assert result.corpus == {"METEOR": 0.5} and result.unavailable == {} and len(created) == 2
    assert all(not m.lock.locked() and m.meteor_p.killed.is_set() for m in created)  # JVMs stopped, locks free


def test_meteor_failing_twice_is_unavailable(monkeypatch) -> None:
    cls, created = fake_meteor(["fail", "hang"])
    monkeypatch.setattr(coco, "Meteor", cls)
    monkeypatch.setattr(coco, "METEOR_TIMEOUT_S", 0.3)
    result = evaluate_captions(REFS, HYPS, ["meteor", "cider"])
    assert result.corpus["METEOR"] is None and result.corpus["CIDEr"] > 0
    assert result.unavailable == {"METEOR": "METEOR (Java) failed twice: timed out after 0.55 s"}
    assert "METEOR" not in result.per_image[101] and len(created) == 2
    assert all(not m.lock.locked() for m in created)


def test_meteor_jvm_that_dies_is_unavailable_not_a_hang(monkeypatch, tmp_path) -> None:
    java = shutil.which("java")
    fake = tmp_path / "java"  # the real java, except for METEOR's jar
    dies = 'echo "Error occurred during initialization of VM" >&2; exit 1'
    fake.write_text(f'#!/bin/sh\ncase "$*" in *meteor-1.5.jar*) {dies};; esac\nexec {java} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    result = evaluate_captions(REFS, HYPS, ["meteor"])
    assert result.corpus == {"METEOR": None}
    assert result.unavailable == {"METEOR": "METEOR (Java) failed twice: Error occurred during initialization of VM"}
    gc.collect()  # pycocoevalcap's Meteor.__del__ must not block on the lock a failed compute_score left held


def test_progress_reports_each_step() -> None:
    seen: list[tuple] = []
    evaluate_captions(REFS, HYPS, ["bleu", "cider"], progress=lambda t, d, n, **i: seen.append((t, d, n, i["metric"])))
    # each step is named while it runs (METEOR's Java is slow), then the end
    assert seen == [("score", 0, 3, "tokenize"), ("score", 1, 3, "Bleu"), ("score", 2, 3, "CIDEr"),
                    ("score", 3, 3, "done")]
