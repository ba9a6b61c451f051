"""``python tests/dist_audit.py <sparsecap args>``: the sparsecap CLI with a Python audit hook that records every file
this process opens for writing, creates, renames or removes under ``$AUDIT_ROOT``, saved to
``$AUDIT_OUT/rank-<RANK>.json`` at exit. The distributed tests launch it under torchrun to check that rank 0 alone
writes into the run directory (the real writes, seen by the interpreter, not a mock)."""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

ROOT = os.path.realpath(os.environ["AUDIT_ROOT"])
OUT = Path(os.environ["AUDIT_OUT"])
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
seen: list[list[str]] = []


def _under(path: object) -> str | None:
    if not isinstance(path, str | bytes | os.PathLike):
        return None  # a file descriptor
    real = os.path.realpath(os.fsdecode(path))
    return real if real == ROOT or real.startswith(ROOT + os.sep) else None


def _hook(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        writes = any(c in str(mode or "") for c in "wax+") or bool((flags or 0) & WRITE_FLAGS)
        where = _under(path) if writes else None
    elif event in ("os.rename", "os.replace"):
        where = _under(args[1])  # the name the file takes
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
        where = _under(args[0])
    else:
        return
    if where is not None:
        seen.append([event, where])


def _save() -> None:
    (OUT / f"rank-{os.environ.get('RANK', '0')}.json").write_text(json.dumps(seen))


atexit.register(_save)
sys.addaudithook(_hook)

from sparsecap_cli.main import run  # noqa: E402 - after the hook, so that every write is seen

run(sys.argv[1:])
