"""Training objectives: what one optimisation step minimises. XE here; SCST's in ``scst.py``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from sparsecap_engine.config import RunConfig
from sparsecap_engine.models.base import CaptionModel
from sparsecap_engine.training.distributed import current
from sparsecap_engine.training.losses import caption_xe

#: one optimisation step's loss: ``(model, training split, image indices, step) -> (loss, info)``; ``info`` holds
#: numbers for the ``train`` event (``items``: captions in the step, for items/s). ``index`` is the **global**
#: batch: in a multi-process run each rank computes the loss of its own block (``training/distributed.py``).
Objective = Callable[[CaptionModel, Any, list[int], int], tuple[torch.Tensor, dict[str, float]]]


def xe_batch_loss(model: CaptionModel, data, index: Sequence[int], generator: torch.Generator, per_img: int,
                  pad_id: int, smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Teacher-forced caption XE of the global batch ``index`` (``per_img`` captions drawn per image with
    ``generator``) → (loss, captions in this process). With several processes each computes its block of images
    against the global token count, so DDP's averaged gradient is the single-process gradient of the whole batch."""
    dist = current()
    tokens = data.caption_batch(index, per_img, generator)  # the global batch's draws: the same on every rank
    mine = dist.part(index)
    if dist.active:
        first = dist.rank * len(mine) * per_img
        tokens = tokens[first : first + len(mine) * per_img]
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    batch = {k: v.to(device, non_blocking=True) for k, v in data.image_batch(mine).items()}  # pinned: async
    memory = model.expand_memory(model.encode(batch), per_img)
    logprobs = model(memory, tokens[:, :-1])
    targets = tokens[:, 1:]
    count = dist.share((targets != pad_id).sum()) if dist.active else None
    return caption_xe(logprobs.float(), targets, pad_id, smoothing, count), int(tokens.shape[0])


def xe_objective(config: RunConfig, pad_id: int) -> Objective:
    """Cross-entropy with teacher forcing on ``seq_per_img`` reference captions per image (reference §3.4)."""
    per_img, seed, smoothing = config.data.seq_per_img, config.train.seed, config.optim.label_smoothing

    def objective(model: CaptionModel, data, index: list[int], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        gen = torch.Generator().manual_seed(seed * 7919 + step)
        loss, items = xe_batch_loss(model, data, index, gen, per_img, pad_id, smoothing)
        return loss, {"items": items}

    return objective
