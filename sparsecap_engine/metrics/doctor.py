"""``sparsecap doctor``'s checks: can this machine run the evaluation toolchain (Java, PTB tokenizer, METEOR, SPICE) and
the models (torch, CUDA)? Each check runs under a timeout and reports instead of raising."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

REQUIRED = ("Java", "PTB tokenizer", "METEOR")  # evaluation cannot run without these
CHECK_TIMEOUT_S = 90.0
SAMPLE = "A man, riding a horse."
NEEDS_JAVA = "skipped: needs Java (see the Java check)"


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str


def _java() -> tuple[bool, str]:
    java = shutil.which("java")
    if java is None:
        return False, "not found on PATH (install a Java runtime, e.g. OpenJDK 11+)"
    done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return done.returncode == 0, lines[0] if lines else f"`java -version` exited with {done.returncode}"


def _ptb() -> tuple[bool, str]:
    from sparsecap_engine.metrics.coco import ptb_tokenize

    if shutil.which("java") is None:
        return False, NEEDS_JAVA
    tokens = ptb_tokenize({0: [SAMPLE]}, timeout=60)[0][0]
    return tokens == "a man riding a horse", f"{SAMPLE!r} → {tokens!r}"


def _meteor() -> tuple[bool, str]:
    from sparsecap_engine.metrics.coco import evaluate_captions

    if shutil.which("java") is None:
        return False, NEEDS_JAVA
    result = evaluate_captions({0: ["a man riding a horse"]}, {0: "a man rides a horse"}, ["meteor"])
    if "METEOR" in result.unavailable:
        return False, result.unavailable["METEOR"]
    return True, f"METEOR 1.5 scored one pair: {result.corpus['METEOR']:.4f}"


def _spice() -> tuple[bool, str]:
    from sparsecap_engine.metrics.coco import spice_missing

    reason = spice_missing()
    return reason is None, reason or "Stanford CoreNLP 3.6.0 jars installed; SPICE will run"


def _cuda() -> tuple[bool, str]:
    import torch

    if not torch.cuda.is_available():
        return False, "not available (CPU only)"
    count = torch.cuda.device_count()
    return True, torch.cuda.get_device_name(0) + (f" (+{count - 1} more)" if count > 1 else "")


def _torch() -> tuple[bool, str]:
    import torch

    return True, f"torch {torch.__version__}"


CHECKS: tuple[tuple[str, Callable[[], tuple[bool, str]]], ...] = (
    ("Java", _java),
    ("PTB tokenizer", _ptb),
    ("METEOR", _meteor),
    ("SPICE", _spice),
    ("CUDA", _cuda),
    ("torch", _torch),
)


def run_check(name: str, fn: Callable[[], tuple[bool, str]], timeout: float = CHECK_TIMEOUT_S) -> Check:
    """Run one check in a thread: its result, or a failed ``Check`` for an exception or a timeout. Never raises."""
    box: list[Check] = []

    def target() -> None:
        try:
            ok, detail = fn()
            box.append(Check(name, bool(ok), detail))
        except BaseException as e:  # noqa: BLE001 - a check reports, it never raises
            message = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
            box.append(Check(name, False, message))

    worker = threading.Thread(target=target, name=f"doctor-{name}", daemon=True)
    worker.start()
    worker.join(timeout)
    return box[0] if box else Check(name, False, f"timed out after {timeout:g} s")


def run_checks(timeout: float = CHECK_TIMEOUT_S) -> list[Check]:
    """Java (version), PTB tokenizer (one sentence), METEOR (one pair), SPICE (installed?), CUDA, torch."""
    return [run_check(name, fn, timeout) for name, fn in CHECKS]


def required_ok(checks: list[Check]) -> bool:
    """Whether every check evaluation needs (``REQUIRED``) passed."""
    return all(c.ok for c in checks if c.name in REQUIRED)
