"""Training objectives: what one optimisation step minimises. XE here; SCST's in ``scst.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sparsecap_engine.config import RunConfig
from sparsecap_engine.models.base import CaptionModel
from sparsecap_engine.training.losses import caption_xe

#: one optimisation step's loss: ``(model, training split, image indices, step) -> (loss, info)``; ``info`` holds
#: numbers for the ``train`` event (``items``: captions in the step, for items/s)
Objective = Callable[[CaptionModel, Any, list[int], int], tuple[torch.Tensor, dict[str, float]]]


def xe_objective(config: RunConfig, pad_id: int) -> Objective:
    """Cross-entropy with teacher forcing on ``seq_per_img`` reference captions per image (reference §3.4)."""
    per_img, seed, smoothing = config.data.seq_per_img, config.train.seed, config.optim.label_smoothing

    def objective(model: CaptionModel, data, index: list[int], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(seed * 7919 + step)
        tokens = data.caption_batch(index, per_img, gen).to(device)
        batch = {k: v.to(device) for k, v in data.image_batch(index).items()}
        memory = model.expand_memory(model.encode(batch), per_img)
        logprobs = model(memory, tokens[:, :-1])
        return caption_xe(logprobs.float(), tokens[:, 1:], pad_id, smoothing), {"items": tokens.shape[0]}

    return objective
