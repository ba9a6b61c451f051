"""Errors a user can cause. Each carries a one-line message; the CLI prints it and exits non-zero."""

from __future__ import annotations


class SparsecapError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` 1 = runtime, 2 = usage."""

    exit_code = 1


class UsageError(SparsecapError):
    """A bad option value or a wrong combination of options."""

    exit_code = 2


class DataError(SparsecapError):
    """A dataset, feature file or image that is missing or malformed."""


class CheckpointError(SparsecapError):
    """A checkpoint that is missing, unreadable or of the wrong format."""


class RunError(SparsecapError):
    """A run directory that is missing or incomplete."""


class OutputError(SparsecapError, OSError):
    """A file the command was asked to write cannot be written there (a folder, a device, a missing mount)."""


class JavaMissingError(SparsecapError):
    """Java is needed by pycocoevalcap (PTB tokenizer, METEOR, SPICE) and was not found."""


class TargetMissedError(RunError):
    """A pruning run completed without reaching its target sparsity (``run_end`` status ``target-missed``)."""


class DivergedError(RunError):
    """The loss or gradient went non-finite: training stopped, the last good checkpoint kept (status ``diverged``)."""


class Interrupted(SparsecapError):
    """A run stopped by Ctrl-C or SIGTERM after saving (status ``interrupted``); exits 130 or 143 like a shell."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code
