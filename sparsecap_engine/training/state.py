"""Trainer state for exact resume, in one atomically written file (``last.state.pt``, torch.save, loaded
weights_only): step, the model's raw state (pruned runs: unmasked weights and masks), the pruning method's own
state, optimiser, AMP scaler, RNG and best score. Resume reads only this file, so it always sees one step, whatever
a kill left in ``last.safetensors`` (the user-facing weights)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import torch

from sparsecap_engine.atomic import atomic_write_bytes
from sparsecap_engine.checkpoint.model_io import read_state
from sparsecap_engine.errors import CheckpointError
from sparsecap_engine.models.base import CaptionModel
from sparsecap_engine.runs import RunDir


def state_path(run: RunDir) -> Path:
    return run.checkpoints / "last.state.pt"


def save_trainer_state(run: RunDir, step: int, optimizer, scaler, best_cider, best_step,
                       model: CaptionModel | None = None, hooks_state: dict | None = None, world: int = 1) -> None:
    state = {
        "step": step,
        "world": world,
        "model": model.state_dict() if model is not None else None,
        "hooks": hooks_state or {},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "python_rng": list(random.getstate()[1]),
        "best_cider": best_cider,
        "best_step": best_step,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(state_path(run), buf.getvalue())


def load_trainer_state(run: RunDir, model: CaptionModel, optimizer, scaler, device,
                       hooks: object | None = None, world: int = 1) -> tuple[int, float | None, int]:
    """Load the model (its raw state; an older state file: ``last`` weights), the hooks' state and the trainer
    state; returns (step, best CIDEr-D, best step). ``world``: the processes resuming it, which must be the number
    that trained it (the per-rank data blocks and random streams depend on it)."""
    from sparsecap_engine.training.hooks import call

    path = state_path(run)
    if not path.is_file():
        raise CheckpointError(f"cannot resume: no trainer state in {run.checkpoints}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        step = int(state["step"])
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise CheckpointError(f"unreadable trainer state {path} ({exc.__class__.__name__})") from None
    if step < 0:
        raise CheckpointError(f"unreadable trainer state {path} (step {step})")
    saved_world = int(state.get("world", 1))
    if saved_world != world:
        how = "in one process (no --nproc, no torchrun)" if saved_world == 1 else (
            f"with {saved_world} processes in all (--nproc {saved_world}, or torchrun nodes × processes per node)")
        raise CheckpointError(f"{run.path} was trained by {saved_world} process(es), this resume has {world}: "
                              f"resume it {how}")
    check_vocab(run)
    weights = state.get("model")
    if weights is None:
        weights, _ = read_state(run.checkpoint("last"))
    try:
        model.load_state_dict(weights)
        model.to(device)
        call(hooks, "load_state_dict", state.get("hooks") or {})
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate((3, tuple(state["python_rng"]), None))
        return step, state["best_cider"], state["best_step"]
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{path} does not fit this run's model and options ({first})") from None


def check_vocab(run: RunDir) -> None:
    """``vocab.json`` must be the vocabulary the run's checkpoints were trained with (their metadata holds it): a
    swapped or edited file would be baked into the resumed run, its captions written in the wrong words."""
    import json

    from sparsecap_engine.checkpoint.dense import read_file

    last = run.checkpoints / "last.safetensors"
    if not (run.vocab_path.is_file() and last.is_file()):
        return
    try:
        saved = json.loads(run.vocab_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{run.vocab_path}: unreadable vocabulary ({exc.__class__.__name__})") from None
    meta = read_file(last)[1]
    try:
        trained = json.loads(meta["vocab"])
    except (KeyError, TypeError, ValueError):
        return  # an old or odd checkpoint: loading its weights will judge it
    if saved != trained:
        raise CheckpointError(f"{run.vocab_path} is not the vocabulary {last.name} was trained with (edited or "
                              "swapped?); restore it to resume")
