"""Atomic writes of files and folders: temp file (or folder) beside the target, fsync, rename. A crash mid-write
leaves the old one intact. Every file the engine writes goes through here."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from sparsecap_engine.errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Replace ``path`` with what ``write(tmp)`` writes to a temp file beside it, so readers see the old file or the
    new one, never a torn one: the temp file gets the mode a plain ``open()`` would give, is fsynced and renamed into
    place, then the folder is fsynced. Any failure removes the temp file and leaves ``path`` as it was."""
    path = Path(path)
    check_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def check_target(path: Path) -> None:
    """``OutputError`` when ``path`` cannot become a file: it is a folder, a device, a pipe (the rename would replace
    a FIFO or ``/dev/full`` with a plain file), or its name is empty."""
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise OutputError(f"cannot write {str(path) or repr(str(path))}: not a file name")
    try:
        odd = (path.exists() or path.is_symlink()) and not path.is_file()
        kind = "a folder" if path.is_dir() else "not a regular file"
    except OSError as exc:  # a name too long, a loop of links
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if odd:
        raise OutputError(f"cannot write {path}: it is {kind}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically; a file that already holds exactly these bytes is left alone (no new mtime)."""
    path = Path(path)
    try:
        if path.is_file() and not path.is_symlink() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_publish_dir(tmp: Path, out: Path, replace: bool, check: Callable[[Path], None]) -> None:
    """Move a finished temp folder to ``out`` by rename, so readers see no folder or a whole one: an empty ``out``
    is taken over; an existing one is replaced (``replace``) or kept, once ``check(out)`` accepts it (or raises)."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    try:
        os.rename(tmp, out)
        return
    except OSError:
        if not out.exists():
            raise
    check(out)  # someone else put something there meanwhile
    if not replace:  # a concurrent generator won the race: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / "d")
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
