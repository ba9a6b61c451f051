"""The run directory (the contract between engine, CLI and TUI) and its append-only JSONL event log."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparsecap_engine.atomic import atomic_write_text
from sparsecap_engine.config import RunConfig, load_toml, to_toml
from sparsecap_engine.errors import RunError, UsageError


def check_run_name(name: str, root_flag: str = "--runs-root", what: str = "run") -> str:
    """A run name is one folder name inside the runs root: no path separators, no ``..``, not absolute, no control
    characters (a newline in a folder name breaks every listing), at most 255 bytes (the file system's limit)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("-") or "\0" in name:
        raise UsageError(f"--name {name!r}: a {what} name is one folder name (no '/', '..' or leading '-'); "
                         f"use {root_flag} to choose where {what}s go")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UsageError(f"--name {name!r}: a {what} name cannot hold control characters (newline, tab, …)")
    if len(os.fsencode(name)) > 255:
        raise UsageError(f"--name is {len(os.fsencode(name))} bytes long; a folder name holds at most 255")
    return name


class EventLog:
    """Append one JSON object per line, flushed per write. Every event carries ``kind``, ``time`` and ``step``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._f = self.path.open("a", encoding="utf-8")
        if self._f.tell() > 0:  # a torn last line (the process was killed mid-write) must not swallow the next event
            with self.path.open("rb") as f:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    self._f.write("\n")
                    self._f.flush()

    def write(self, kind: str, step: int, **fields: Any) -> dict[str, Any]:
        event = {"kind": kind, "time": time.time(), "step": int(step), **fields}
        self._f.write(json.dumps(event, default=float) + "\n")
        self._f.flush()
        return event

    def close(self) -> None:
        self._f.close()


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the complete, well-formed events of a log (a torn last line or a malformed one is skipped)."""
    with Path(path).open(encoding="utf-8", errors="replace") as f:  # bytes that are not UTF-8: a malformed line
        for line in f:
            if not line.endswith("\n"):
                return
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                yield event


LOCK_NAME = ".lock"
_held: dict[str, int] = {}  # run directories this process has locked: real path -> the lock file's descriptor


def lock_folder(path: Path, what: str = "run", reentrant: bool = True) -> bool:
    """Take ``path/.lock`` exclusively for the rest of this process, or until :func:`unlock_folder` (``flock``: the
    kernel drops it when the process ends, even by kill -9, so a crash never leaves a folder locked). Held already
    by this process: nothing to do (``reentrant``; returns False) or refused. Held by another: ``RunError`` naming
    it (pid, command, since when)."""
    key = os.path.realpath(path)
    if key in _held:
        if reentrant:
            return False
        raise RunError(f"{what} {path} is already in use by this process (pid {os.getpid()})")
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunError(f"{what} {path} is already in use by {holder}") from None
    except OSError as e:  # a file system without locks (some network mounts): say so rather than race
        os.close(fd)
        raise RunError(f"cannot lock {what} {path}: {e.strerror}") from None
    os.ftruncate(fd, 0)
    command = " ".join(["sparsecap", *sys.argv[1:2]]) if sys.argv and sys.argv[0].endswith("sparsecap") else "python"
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} ({command}, since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
    _held[key] = fd
    return True


def holder_alive(path: Path) -> bool | None:
    """Is the process that last locked ``path`` (a run folder, see :func:`lock_folder`) still alive? True / False
    when it ran on this host (its pid is looked up; a pid now used by a program that is no Python is dead), None
    when that cannot be told here (another host, no lock file)."""
    try:
        text = (Path(path) / LOCK_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = re.match(r"pid (\d+)(?: on (\S+))?", text)
    if not m:
        return None
    if m.group(2) is not None and m.group(2) != socket.gethostname():
        return None
    pid = int(m.group(1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): the pid exists
    return b"python" in cmdline or b"sparsecap" in cmdline


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed)."""
    return sum(p.lstat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())


def delete_run(path: Path) -> int:
    """Delete the run directory ``path`` and return the bytes freed. Refused (RunError, nothing deleted) when it is
    no run (no config.toml) or when the process that holds it is alive on this host."""
    path = Path(path)
    if not (path / "config.toml").is_file():
        raise RunError(f"not a sparsecap run (no config.toml), not deleted: {path}")
    if holder_alive(path):
        holder = (path / LOCK_NAME).read_text(encoding="utf-8", errors="replace").strip()
        raise RunError(f"{path.name} is running ({holder}): stop it before deleting it")
    size = folder_bytes(path)
    shutil.rmtree(path)
    return size


def unlock_folder(path: Path) -> None:
    fd = _held.pop(os.path.realpath(path), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


#: runs this process created that may not have started yet: (run, the top folder create() made, or None)
_fresh: list[tuple[RunDir, Path | None]] = []


def discard_unstarted_runs() -> None:
    """Remove what :meth:`RunDir.create` made in this process for runs that never started (no ``run_start`` event):
    a command that fails on its input after creating the run directory leaves nothing behind. Called by the CLI
    before it reports an error; a run that started keeps its folder (its log says how it ended)."""
    while _fresh:
        run, top = _fresh.pop()
        try:
            started = any(e.get("kind") == "run_start" for e in run.events())
        except (OSError, ValueError):
            started = True  # unreadable: keep it, never delete what we cannot judge
        if started or not run.path.is_dir():
            continue
        run.unlock()
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
            continue
        for child in run.path.iterdir():  # the folder existed (empty, or --overwrite): empty it again
            if child.name == LOCK_NAME:
                child.unlink(missing_ok=True)
            elif child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _first_missing(path: Path) -> Path | None:
    """The top-most folder of ``path`` (itself or an ancestor) that does not exist yet, or None."""
    top = None
    for p in (path, *path.parents):
        if p.exists():
            break
        top = p
    return top


class RunDir:
    """``runs/<name>/``: config.toml, events.jsonl, vocab.json, checkpoints/, eval/, plots/."""

    def __init__(self, path: Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.toml")
    events_path = property(lambda self: self.path / "events.jsonl")
    vocab_path = property(lambda self: self.path / "vocab.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    plots = property(lambda self: self.path / "plots")

    @classmethod
    def create(cls, path: Path, overwrite: bool = False) -> RunDir:
        """A new, empty run directory; ``overwrite`` clears a previous run there completely (no stale pruned
        checkpoint, masks or tables survive to be mistaken for the new run's)."""
        path = Path(path)
        try:
            if path.exists() and not path.is_dir():
                raise RunError(f"run path exists and is not a directory: {path}")
            top = _first_missing(path)
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a folder should be, a read-only or missing mount, a name too long
            raise RunError(f"cannot create run directory {path}: {exc.strerror or exc}") from None
        taken = lock_folder(path)  # two processes creating one run: exactly one gets it, the other is told who has it
        children = [child for child in path.iterdir() if child.name != LOCK_NAME]
        if children:
            if not overwrite:
                if taken:
                    unlock_folder(path)
                raise RunError(f"run directory already exists and is not empty: {path} "
                               "(use --overwrite or a new --name)")
            for child in children:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        run = cls(path)
        for sub in (run.checkpoints, run.plots):
            sub.mkdir(parents=True, exist_ok=True)
        _fresh.append((run, top))
        return run

    def lock(self) -> None:
        """Hold this run for the rest of the process (see ``lock_folder``): every job that writes into it takes it."""
        lock_folder(self.path)

    def unlock(self) -> None:
        unlock_folder(self.path)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        run = cls(Path(path))
        if not run.path.is_dir():
            raise RunError(f"run not found: {path}")
        if not run.config_path.is_file():
            raise RunError(f"not a sparsecap run (no config.toml): {path}")
        return run

    def save_config(self, config: RunConfig) -> None:
        atomic_write_text(self.config_path, to_toml(config.to_dict()))

    def load_config(self) -> RunConfig:
        return load_toml(self.config_path)

    def checkpoint(self, which: str = "best") -> Path:
        """Path of ``best``/``last`` model weights; falls back from best to last; RunError when neither exists."""
        for name in (which, "last") if which == "best" else (which,):
            p = self.checkpoints / f"{name}.safetensors"
            if p.is_file():
                return p
        raise RunError(f"run has no {which} checkpoint: {self.path}")

    def events(self) -> Iterator[dict[str, Any]]:
        if not self.events_path.is_file():
            return iter(())
        return read_events(self.events_path)
