"""Multi-process training on ``torch.distributed`` (launched by ``torchrun``): who this process is, and the few
collectives the recipes need.

``torchrun --nproc-per-node N -m sparsecap_cli train …`` starts N copies of the command; each reads ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` from its environment (:func:`init_from_env`). The conventions (README "Scaling
out"):

- ``train.batch_size`` is the **global** batch: every step draws the same global batch on every rank (a permutation
  of the training images per epoch, seeded by the run's seed) and rank ``r`` takes its ``r``-th contiguous block
  (:meth:`Dist.part`), so each image is seen once per epoch across the ranks and the order does not depend on N;
  the batch size must divide by N.
- the losses are normalised by the **global** token count (:meth:`Dist.share`), so the gradient DDP averages is the
  gradient of the single-process loss of the same global batch;
- every rank starts from the same seed (dropout and supermask samples come from identical streams; weights and
  masks are identical by construction, and :meth:`Dist.check_same` verifies it at each validation);
- rank 0 alone writes into the run directory; :meth:`Dist.on_main` runs a step (creating the run) on rank 0 and
  gives every rank its result or its error, so a refused start is refused on every rank, never a hang.

A single process (no ``torchrun``) gets :data:`SINGLE`, whose collectives are the identity.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as td
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sparsecap_engine.errors import SparsecapError, UsageError

T = TypeVar("T")

#: ``train.dist_backend`` values: ``auto`` = nccl for CUDA, gloo for the CPU
BACKENDS = ("auto", "gloo", "nccl")


class DistError(SparsecapError):
    """A multi-process job that cannot start or went out of step (reported on every rank)."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world`` processes (``local_rank`` on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- data ------------------------------------------------------------------------------------------------------
    def part(self, index: Sequence[int]) -> list[int]:
        """This rank's contiguous block of a global batch (every rank gets ``len(index) / world`` items)."""
        n = len(index) // self.world
        return list(index[self.rank * n : (self.rank + 1) * n])

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise UsageError(f"train.batch_size {batch_size} is the global batch and must divide by the "
                             f"{self.world} processes (e.g. {batch_size - batch_size % self.world or self.world})")

    # ---- collectives -----------------------------------------------------------------------------------------------
    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """Σ over the ranks (a new tensor; ``x`` itself in a single process)."""
        if not self.active:
            return x
        out = x.detach().clone()
        td.all_reduce(out)
        return out

    def share(self, count: torch.Tensor) -> torch.Tensor:
        """The normaliser that makes DDP's average of per-rank gradients the gradient of the global loss: a loss
        ``Σ_r / share(n_r)`` with ``share(n) = Σ_ranks n / world`` (``n`` itself in a single process)."""
        if not self.active:
            return count
        return self.sum(count.to(torch.float64)) / self.world

    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        """In place: each tensor becomes its mean over the ranks (SNIP's saliency gradients)."""
        if self.active:
            for t in tensors:
                td.all_reduce(t)
                t.div_(self.world)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any (a stop request that reached one rank stops them all)."""
        return self.any_each(flag)[0]

    def any_each(self, *flags: bool) -> tuple[bool, ...]:
        """:meth:`any` of several flags in one all-reduce (a training step checks two: non-finite, stop)."""
        if not self.active:
            return tuple(bool(f) for f in flags)
        t = torch.tensor([1.0 if f else 0.0 for f in flags])
        td.all_reduce(t, op=td.ReduceOp.MAX)
        return tuple(bool(v > 0) for v in t.tolist())

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank (pickled: small Python objects only)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            td.barrier()

    def on_main(self, fn: Callable[[], T], follow: Callable[[T | None], T] | None = None) -> T:
        """``fn()`` on rank 0; the other ranks wait for it and get ``follow(value)`` (the value itself without
        ``follow``; it must pickle). An error on rank 0 is raised on every rank as the same one-line error."""
        if not self.active:
            return fn()
        value: Any = None
        failure: tuple[str, str] | None = None
        if self.is_main:
            try:
                value = fn()
            except Exception as exc:  # noqa: BLE001 - whatever stops rank 0 must also release the others
                failure = (exc.__class__.__name__, str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
                self._send([None, failure])
                raise
            self._send([value if follow is None else None, None])
            return value
        got = self._send([None, None])
        if got[1] is not None:
            raise DistError(f"rank 0: {got[1][1]}")
        return follow(got[0]) if follow is not None else got[0]

    def _send(self, box: list[Any]) -> list[Any]:
        td.broadcast_object_list(box, src=0)
        return box

    def check_same(self, tensors: dict[str, torch.Tensor], what: str) -> None:
        """Raise :class:`DistError` unless ``tensors`` are bit-identical on every rank (a digest is compared)."""
        if not self.active:
            return
        h = hashlib.sha256()
        for name in sorted(tensors):
            t = tensors[name].detach()
            h.update(name.encode())
            h.update(t.to("cpu").reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        digests = self.gather(h.hexdigest())
        if len(set(digests)) > 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise DistError(f"{what} differ between ranks (rank(s) {', '.join(map(str, odd))} vs rank 0)")

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda`` becomes ``cuda:<local rank>`` (one GPU per process)."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device


class _NoLog:
    """The event log of ranks other than 0: they write nothing into the run directory."""

    def write(self, kind: str, step: int, **fields: Any) -> dict[str, Any]:
        return {"kind": kind, "step": int(step), **fields}

    def close(self) -> None:
        pass


NO_LOG = _NoLog()


class _StepModule(nn.Module):
    """One step's loss as a module, so that ``DistributedDataParallel`` owns the model's weights and the plug-ins'
    extra parameters (supermask logits, which are not the model's) and averages all their gradients."""

    def __init__(self, model: nn.Module, extra: Sequence[nn.Parameter]):
        super().__init__()
        self.model = model
        self.extra = nn.ParameterList(extra)

    def forward(self, objective: Callable[..., Any], data: Any, index: list[int], step: int) -> Any:
        return objective(self.model, data, index, step)


def data_parallel(model: nn.Module, extra: Sequence[torch.Tensor], objective: Callable[..., Any],
                  ) -> Callable[..., Any]:
    """``objective`` run under ``DistributedDataParallel``: same call, the gradients averaged over the ranks in the
    backward pass."""
    bad = [i for i, p in enumerate(extra) if not isinstance(p, nn.Parameter)]
    if bad:
        raise TypeError("extra trainable tensors must be nn.Parameter objects to be averaged across ranks")
    # every model's weights take part in every step (checked for each preset), and so do the plug-ins' parameters
    # while they require a gradient (the recipe wraps again when that changes: a supermask hardening)
    ddp = DistributedDataParallel(_StepModule(model, [p for p in extra if p.requires_grad]))

    def step_loss(_model: nn.Module, data: Any, index: list[int], step: int) -> Any:
        return ddp(objective, data, index, step)

    return step_loss


def trained_state(model: nn.Module, extra: Sequence[torch.Tensor] = ()) -> dict[str, torch.Tensor]:
    """What must be identical on every rank: the weights, the masks (parametrization buffers) and the plug-ins'
    parameters. Normalisation statistics are not: each rank's follow its own images, and rank 0's are the ones DDP
    broadcasts at each step and the checkpoints keep."""
    out = dict(model.named_parameters())
    out.update((n, b) for n, b in model.named_buffers() if ".parametrizations." in f".{n}")
    out.update((f"extra.{i}", p) for i, p in enumerate(extra))
    return out


SINGLE = Dist()
_current: Dist = SINGLE


def current() -> Dist:
    """The job this process belongs to (:data:`SINGLE` until :func:`init_from_env` joined one)."""
    return _current


def launched() -> bool:
    """Started by torchrun (or anything that sets ``WORLD_SIZE`` > 1)?"""
    return _env_int("WORLD_SIZE", 1) > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise DistError(f"environment variable {name}={raw!r} is not an integer") from None


def init_from_env(device: str = "auto", backend: str = "auto", timeout_s: float = 600.0) -> Dist:
    """Join the job torchrun started (a no-op returning :data:`SINGLE` in a single process). ``timeout_s`` bounds
    every collective: a rank that died or hangs ends the others with an error instead of a hang."""
    global _current
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE
    if td.is_initialized():
        return _current
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if backend not in BACKENDS:
        raise UsageError(f"unknown train.dist_backend {backend!r}; choose from {', '.join(BACKENDS)}")
    chosen = ("nccl" if cuda else "gloo") if backend == "auto" else backend
    if cuda:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if local_world > count:
            raise DistError(f"{local_world} processes per node but {count} CUDA device(s) here: use "
                            f"--nproc-per-node {count or 1}{'' if count else ' with --device cpu'}")
        torch.cuda.set_device(local)
    if chosen == "nccl" and not (cuda and td.is_nccl_available()):
        raise DistError("backend nccl needs CUDA GPUs and a CUDA build of torch; use train.dist_backend=gloo")
    if not td.is_available() or (chosen == "gloo" and not td.is_gloo_available()):
        raise DistError(f"backend {chosen} is not available in this build of torch")
    if not timeout_s > 0:
        raise UsageError(f"train.dist_timeout must be a positive number of seconds, got {timeout_s}")
    try:
        td.init_process_group(chosen, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise DistError(f"cannot join the {world}-process job as rank {rank}: {first}") from None
    _current = Dist(rank, world, local)
    return _current


def shutdown() -> None:
    """Leave the job (at the end of a command)."""
    global _current
    if td.is_available() and td.is_initialized():
        td.destroy_process_group()
    _current = SINGLE
