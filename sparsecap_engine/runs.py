"""The run directory (the contract between engine, CLI and TUI) and its append-only JSONL event log."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparsecap_engine.checkpoint.atomic import atomic_write_text
from sparsecap_engine.config import RunConfig, load_toml, to_toml
from sparsecap_engine.errors import RunError, UsageError


def check_run_name(name: str) -> str:
    """A run name is one folder name inside the runs root: no path separators, no ``..``, not absolute."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("-") or "\0" in name:
        raise UsageError(f"--name {name!r}: a run name is one folder name (no '/', '..' or leading '-'); "
                         "use --runs-root to choose where runs go")
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
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                yield event


class RunDir:
    """``runs/<name>/``: config.toml, events.jsonl, vocab.json, checkpoints/, eval/, plots/."""

    def __init__(self, path: Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.toml")
    events_path = property(lambda self: self.path / "events.jsonl")
    vocab_path = property(lambda self: self.path / "vocab.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    plots = property(lambda self: self.path / "plots")

    def eval_dir(self, split: str, beam: int) -> Path:
        return self.path / "eval" / f"{split}-beam{beam}"

    @classmethod
    def create(cls, path: Path, overwrite: bool = False) -> RunDir:
        """A new, empty run directory; ``overwrite`` clears a previous run there completely (no stale pruned
        checkpoint, masks or tables survive to be mistaken for the new run's)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunError(f"run path exists and is not a directory: {path}")
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise RunError(f"run directory already exists and is not empty: {path} "
                               "(use --overwrite or a new --name)")
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        run = cls(path)
        for sub in (run.path, run.checkpoints, run.plots):
            sub.mkdir(parents=True, exist_ok=True)
        return run

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
