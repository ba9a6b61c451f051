"""Tiny pruned models shared by the sparse-checkpoint tests."""

from __future__ import annotations

import torch

from sparsecap_engine.pruning.scope import prunable
from sparsecap_engine.text.vocab import Vocab
from tests.test_models_transformer import tiny as tiny_transformer
from tests.test_models_updown import tiny as tiny_updown


def prune_random(model: torch.nn.Module, sparsity: float, seed: int = 0) -> torch.nn.Module:
    """Zero a random ``sparsity`` share of every prunable weight, in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module, pname in prunable(model).values():
            w = getattr(module, pname)
            w.mul_(torch.rand(w.shape, generator=g) >= sparsity)
    return model.eval()


def pruned_updown(sparsity: float = 0.9, encoder: str = "grid-cnn") -> torch.nn.Module:
    return prune_random(tiny_updown(encoder), sparsity)


def pruned_ort(sparsity: float = 0.9, **kw) -> torch.nn.Module:
    return prune_random(tiny_transformer("ort", **kw), sparsity)


def vocab_for(model: torch.nn.Module) -> Vocab:
    return Vocab([f"w{i}" for i in range(model.config["vocab_size"] - 4)])
