"""``sparsecap train|prune --nproc N``: the same command re-launched under ``torchrun`` with N processes (DDP)."""

from __future__ import annotations

import os
import sys

from sparsecap_engine.errors import UsageError

#: the commands that train, and so may run as several processes
DISTRIBUTED_COMMANDS = ("train", "prune")
#: how often torchrun checks its workers (seconds): also how late a finished or failed job is noticed
MONITOR_INTERVAL_S = 1


def torchrun_argv(args: list[str]) -> list[str] | None:
    """The ``torchrun`` arguments that run ``args`` as ``--nproc N`` processes on this machine (``--nproc 1``: just
    ``-m sparsecap_cli …``), or None when ``args`` ask for no launch (no ``--nproc``, another command)."""
    if not args or args[0] not in DISTRIBUTED_COMMANDS:
        return None
    rest: list[str] = []
    value: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--nproc":
            if i + 1 >= len(args):
                raise UsageError("--nproc needs a number of processes")
            value, i = args[i + 1], i + 2
            continue
        if arg.startswith("--nproc="):
            value = arg.partition("=")[2]
        else:
            rest.append(arg)
        i += 1
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"--nproc must be a whole number of processes, got {value!r}") from None
    if not 1 <= n <= 1024:
        raise UsageError(f"--nproc must be between 1 and 1024, got {n}")
    if n == 1:
        return ["-m", "sparsecap_cli", *rest]
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise UsageError("--nproc inside a torchrun job: give one or the other")
    # --monitor-interval: torchrun stops the other workers as soon as it sees one fail (every 0.1 s by default); a
    # bad launch is found by every worker at start-up, and a second to get there lets each one print its own line
    return ["--standalone", f"--nproc-per-node={n}", f"--monitor-interval={MONITOR_INTERVAL_S}", "-m", "sparsecap_cli",
            *rest]


def launch(torchrun_args: list[str]) -> int:
    """Run ``torchrun <torchrun_args>`` in this process; returns the job's exit code (a worker's own, e.g. 1 for an
    error it printed as one line, 130 / 143 when interrupted). Each worker reports its own errors, so torchrun's
    failure summary and its logging are kept quiet; the CPU's threads are shared out between the workers."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    if torchrun_args and torchrun_args[0] == "-m":  # --nproc 1: the command itself, in a fresh interpreter
        os.execv(sys.executable, [sys.executable, *torchrun_args])
    n = int(torchrun_args[1].partition("=")[2])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))  # never N × all cores
    for name in [*logging.root.manager.loggerDict, "torch.distributed.elastic"]:
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        torchrun(get_args_parser().parse_args(torchrun_args))
    except SignalException as exc:  # Ctrl-C or SIGTERM: torchrun passed it on, the workers saved and stopped
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values()]
        code = next((c for c in codes if c > 0), codes[0] if codes else 1)
        return code if code > 0 else 128 - code  # a worker killed by signal N: 128 + N, as a shell reports it
    return 0
