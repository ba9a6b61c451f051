"""Trainer state for exact resume: optimiser, AMP scaler, RNG, step, best score (torch.save, loaded weights_only)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import torch

from sparsecap_engine.checkpoint.atomic import atomic_write_bytes
from sparsecap_engine.checkpoint.model_io import read_state
from sparsecap_engine.errors import CheckpointError
from sparsecap_engine.models.base import CaptionModel
from sparsecap_engine.runs import RunDir


def state_path(run: RunDir) -> Path:
    return run.checkpoints / "last.state.pt"


def save_trainer_state(run: RunDir, step: int, optimizer, scaler, best_cider, best_step) -> None:
    state = {
        "step": step,
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


def load_trainer_state(run: RunDir, model: CaptionModel, optimizer, scaler, device) -> tuple[int, float | None, int]:
    """Load ``last`` weights and trainer state; returns (step, best CIDEr-D, best step)."""
    path = state_path(run)
    if not path.is_file():
        raise CheckpointError(f"cannot resume: no trainer state in {run.checkpoints}")
    weights, _ = read_state(run.checkpoint("last"))
    model.load_state_dict(weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise CheckpointError(f"unreadable trainer state {path} ({exc.__class__.__name__})") from None
    model.to(device)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate((3, tuple(state["python_rng"]), None))
    return int(state["step"]), state["best_cider"], state["best_step"]
