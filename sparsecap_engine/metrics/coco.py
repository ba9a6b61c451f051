"""Final evaluation through the real pycocoevalcap: PTB tokenizer, BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE.

Scores equal those of calling pycocoevalcap directly. What differs is the handling around it: Java is checked up front,
pycocoevalcap's prints are silenced, METEOR gets a timeout and one retry, and SPICE runs only when its Stanford CoreNLP
jars are already installed (pycocoevalcap would download them). A metric that cannot run is reported unavailable with a
one-line reason instead of failing the whole evaluation.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import get_stanford_models
from pycocoevalcap.spice.spice import Spice
from pycocoevalcap.tokenizer import ptbtokenizer

from sparsecap_engine.errors import DataError, JavaMissingError, SparsecapError, UsageError
from sparsecap_engine.progress import Progress, no_progress

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
ALIASES: dict[str, tuple[str, ...]] = {
    "bleu": METRICS[:4],
    **{f"bleu{k}": (f"Bleu_{k}",) for k in range(1, 5)},
    **{f"bleu_{k}": (f"Bleu_{k}",) for k in range(1, 5)},
    "meteor": ("METEOR",),
    "rouge": ("ROUGE_L",),
    "rouge_l": ("ROUGE_L",),
    "rougel": ("ROUGE_L",),
    "cider": ("CIDEr",),
    "cider_d": ("CIDEr",),
    "ciderd": ("CIDEr",),
    "spice": ("SPICE",),
}
CHOICES = "bleu, bleu_1..bleu_4, meteor, rouge_l, cider, spice"
JAVA_MISSING = "Java was not found on PATH; pycocoevalcap needs it (run `sparsecap doctor`)"
SPICE_MISSING = "SPICE needs Stanford CoreNLP 3.6.0 jars, which are not installed (no download here)"
TOKENIZER_TIMEOUT_S = 600.0
METEOR_TIMEOUT_S = 120.0  # plus METEOR_PER_IMAGE_S per image; a JVM that hangs longer counts as a failed try
METEOR_PER_IMAGE_S = 0.05


@dataclass
class EvalResult:
    """Corpus scores (requested metrics in ``METRICS`` order, None if unavailable), per-image scores, reasons."""

    corpus: dict[str, float | None]
    per_image: dict[int, dict[str, float]]
    unavailable: dict[str, str] = field(default_factory=dict)


def resolve_metrics(names: Sequence[str] | None) -> list[str]:
    """Canonical metric names, in ``METRICS`` order, for case-insensitive names or aliases (None = all)."""
    if names is None:
        return list(METRICS)
    chosen: set[str] = set()
    for name in names:
        key = name.strip().lower().replace("-", "_")
        if key not in ALIASES and key not in (m.lower() for m in METRICS):
            raise UsageError(f"unknown metric {name!r}; choose from {CHOICES}")
        chosen.update(ALIASES.get(key) or [m for m in METRICS if m.lower() == key])
    if not chosen:
        raise UsageError(f"no metric requested; choose from {CHOICES}")
    return [m for m in METRICS if m in chosen]


def require_java() -> str:
    """Path of ``java``, or ``JavaMissingError``."""
    java = shutil.which("java")
    if java is None:
        raise JavaMissingError(JAVA_MISSING)
    return java


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _reason(error: BaseException) -> str:
    """An exception as one line: its message's first line, else its type."""
    return _first_line(str(error)) or type(error).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow pycocoevalcap's Python-side prints."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def ptb_tokenize(captions: Mapping[Any, Sequence[str]], timeout: float = TOKENIZER_TIMEOUT_S) -> dict[Any, list[str]]:
    """pycocoevalcap's PTB tokenization (same jar, flags and punctuation filter as ``PTBTokenizer.tokenize``).

    Run here rather than through ``PTBTokenizer`` so that Java's stderr is captured instead of printed, the temp file
    goes to the system temp folder, a failure is one line, and a caption's line breaks cannot shift later captions.
    """
    java = require_java()
    keys = [k for k, caps in captions.items() for _ in caps]
    lines = [" ".join(c.splitlines()) for caps in captions.values() for c in caps]
    jar_dir = Path(ptbtokenizer.__file__).parent
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines).encode())
    try:
        cmd = [java, "-cp", ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR, "edu.stanford.nlp.process.PTBTokenizer"]
        done = subprocess.run(
            [*cmd, "-preserveLines", "-lowerCase", f.name], cwd=jar_dir, capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        raise SparsecapError(f"PTB tokenizer (Java) timed out after {timeout:.0f} s") from e
    finally:
        Path(f.name).unlink(missing_ok=True)
    out = done.stdout.decode().split("\n")
    if done.returncode != 0 or len(out) < len(lines):
        why = _first_line(done.stderr.decode(errors="replace")) if done.returncode else "lines were lost"
        raise SparsecapError(f"PTB tokenizer (Java) failed: {why or f'exit code {done.returncode}'}")
    tokenized: dict[Any, list[str]] = {k: [] for k in captions}
    for key, line in zip(keys, out, strict=False):
        words = [w for w in line.rstrip().split(" ") if w not in ptbtokenizer.PUNCTUATIONS]
        tokenized[key].append(" ".join(words))
    return tokenized


def _run_with_timeout(fn: Callable[[], Any], timeout: float, on_timeout: Callable[[], None]) -> Any:
    """``fn()`` in a thread; past ``timeout`` call ``on_timeout`` (which must unblock it) and raise ``TimeoutError``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e

    worker = threading.Thread(target=target, name="sparsecap-metric", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        on_timeout()
        worker.join(5.0)
        raise TimeoutError(f"timed out after {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _close_meteor(meteor: Meteor) -> None:
    """Stop METEOR's JVM now; releases the lock a failed ``compute_score`` leaves held (its ``__del__`` would hang)."""
    if meteor.lock.locked():
        meteor.lock.release()
    proc = meteor.meteor_p
    proc.kill()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        with contextlib.suppress(OSError):  # closing stdin of a dead JVM flushes into a broken pipe
            if pipe is not None:
                pipe.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _meteor_once(gts: dict[int, list[str]], res: dict[int, list[str]], timeout: float) -> tuple[float, list[float]]:
    with _quiet():
        meteor = Meteor()
    try:
        score, scores = _run_with_timeout(lambda: meteor.compute_score(gts, res), timeout, meteor.meteor_p.kill)
    except Exception as e:
        proc, why = meteor.meteor_p, ""
        if not isinstance(e, TimeoutError):
            with contextlib.suppress(subprocess.TimeoutExpired):  # its stdout closed a moment before it is reaped
                proc.wait(timeout=2)
        if not isinstance(e, TimeoutError) and proc.poll() is not None and proc.stderr is not None:
            with contextlib.suppress(OSError, ValueError):  # a JVM that died says why on stderr
                lines = proc.stderr.read().decode(errors="replace").splitlines()
                why = next((line.strip() for line in lines if "Error" in line or "Exception" in line), "")
        _close_meteor(meteor)
        raise RuntimeError(why or _reason(e)) from e
    _close_meteor(meteor)
    return float(score), [float(s) for s in scores]


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]]) -> tuple[float, list[float]]:
    """METEOR 1.5 through pycocoevalcap, tried twice; ``RuntimeError`` with a one-line reason if both fail."""
    timeout = METEOR_TIMEOUT_S + METEOR_PER_IMAGE_S * len(gts)
    error: Exception = RuntimeError()
    for _ in range(2):
        try:
            return _meteor_once(gts, res, timeout)
        except Exception as e:  # noqa: BLE001 - whatever broke, retry once, then report it
            error = e
    raise RuntimeError(f"METEOR (Java) failed twice: {_reason(error)}") from error


def spice_jars() -> list[Path]:
    """The Stanford CoreNLP jars SPICE needs (what ``get_stanford_models`` would download)."""
    lib = Path(get_stanford_models.SPICEDIR) / get_stanford_models.SPICELIB
    return [lib / f"{get_stanford_models.JAR}.jar", lib / f"{get_stanford_models.JAR}-models.jar"]


def spice_missing() -> str | None:
    """Why SPICE cannot run here, or None when its jars are installed."""
    return SPICE_MISSING if not all(p.is_file() for p in spice_jars()) else None


def _spice(gts: dict[int, list[str]], res: dict[int, list[str]]) -> tuple[float, dict[int, float]]:
    with _quiet():
        score, scores = Spice().compute_score(gts, res)
    return float(score), {k: float(s["All"]["f"]) for k, s in zip(sorted(gts), scores, strict=True)}


def evaluate_captions(
    refs: Mapping[int, Sequence[str]],
    hyps: Mapping[int, str],
    metrics: Sequence[str] | None = None,
    *,
    progress: Progress = no_progress,
) -> EvalResult:
    """Score raw captions: PTB-tokenise ``refs`` and ``hyps`` (image id → captions), then each requested metric.

    Only the images in ``hyps`` are scored. METEOR or SPICE that cannot run is None in ``corpus`` with its reason in
    ``unavailable``; a missing Java raises ``JavaMissingError``.
    """
    wanted = resolve_metrics(metrics)
    if not hyps:
        raise DataError("no captions to evaluate")
    for image, caps in ((k, refs.get(k)) for k in hyps):
        if isinstance(caps, str) or not caps:
            raise DataError(f"image {image} has no reference captions")
        if not isinstance(hyps[image], str) or not all(isinstance(c, str) for c in caps):
            raise DataError(f"the captions of image {image} must be strings")
    require_java()
    groups = ("Bleu", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
    steps = ["tokenize", *(g for g in groups if any(m.startswith(g) for m in wanted))]

    def step(name: str) -> None:
        """Say which step runs now (``done`` = steps finished): a slow one (METEOR's Java) shows while it runs."""
        progress("score", steps.index(name), len(steps), metric=name)

    step("tokenize")
    gts = ptb_tokenize({k: list(refs[k]) for k in hyps})
    res = ptb_tokenize({k: [hyps[k]] for k in hyps})
    corpus: dict[str, float | None] = {}
    per_metric: dict[str, dict[int, float]] = {}
    unavailable: dict[str, str] = {}

    def record(name: str, score: float | None, scores: Mapping[int, float] | Sequence[float] | None) -> None:
        corpus[name] = None if score is None else float(score)
        if scores is not None:
            per_metric[name] = (
                dict(scores) if isinstance(scores, Mapping) else dict(zip(gts, map(float, scores), strict=True))
            )

    if any(m.startswith("Bleu") for m in wanted):
        step("Bleu")
        with _quiet():
            score, scores = Bleu(4).compute_score(gts, res)
        for k in range(4):
            if f"Bleu_{k + 1}" in wanted:
                record(f"Bleu_{k + 1}", score[k], scores[k])
    if "METEOR" in wanted:
        step("METEOR")
        try:
            record("METEOR", *_meteor(gts, res))
        except RuntimeError as e:
            record("METEOR", None, None)
            unavailable["METEOR"] = _reason(e)
    if "ROUGE_L" in wanted:
        step("ROUGE_L")
        score, scores = Rouge().compute_score(gts, res)
        record("ROUGE_L", score, np.asarray(scores).tolist())
    if "CIDEr" in wanted:
        step("CIDEr")
        score, scores = Cider().compute_score(gts, res)
        record("CIDEr", score, np.asarray(scores).tolist())
    if "SPICE" in wanted:
        step("SPICE")
        reason = spice_missing()
        if reason is None:
            try:
                record("SPICE", *_spice(gts, res))
            except Exception as e:  # noqa: BLE001 - any SPICE failure makes it unavailable, never a crash
                reason = f"SPICE failed: {_reason(e)}"
        if reason is not None:
            record("SPICE", None, None)
            unavailable["SPICE"] = reason
    progress("score", len(steps), len(steps), metric="done")

    per_image = {k: {m: per_metric[m][k] for m in wanted if m in per_metric} for k in gts}
    return EvalResult({m: corpus[m] for m in wanted}, per_image, unavailable)
