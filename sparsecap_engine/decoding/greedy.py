"""Greedy decoding and multinomial sampling over the model interface (``encode``/``init_state``/``step``)."""

from __future__ import annotations

import torch
from torch import Tensor

from sparsecap_engine.models.base import CaptionModel, Memory


def _decode(
    model: CaptionModel, memory: Memory, bos: int, eos: int, pad: int, max_len: int, pick, suppress: list[int]
) -> tuple[Tensor, Tensor]:
    b = next(iter(memory.values())).shape[0]
    device = next(iter(memory.values())).device
    state = model.init_state(memory)
    tokens = torch.full((b,), bos, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    seqs, logps = [], []
    for t in range(max_len):
        logp, state = model.step(memory, tokens, state)
        logp = logp.float()
        if suppress:
            logp = logp.clone()
            logp[:, suppress] = float("-inf")
        tokens = pick(logp, t)
        chosen = logp.gather(1, tokens.unsqueeze(1)).squeeze(1)
        tokens = tokens.masked_fill(done, pad)
        seqs.append(tokens)
        logps.append(chosen.masked_fill(done, 0.0))
        done = done | (tokens == eos)
        if bool(done.all()):
            break
    return torch.stack(seqs, 1), torch.stack(logps, 1)


@torch.no_grad()
def greedy(model: CaptionModel, memory: Memory, bos: int, eos: int, pad: int, max_len: int) -> Tensor:
    """Argmax at each step; tokens after ``<eos>`` are ``pad``. Returns (B, T) ids (``<eos>`` included)."""
    seqs, _ = _decode(model, memory, bos, eos, pad, max_len, lambda lp, t: lp.argmax(-1), [bos, pad])
    return seqs


def sample(
    model: CaptionModel,
    memory: Memory,
    bos: int,
    eos: int,
    pad: int,
    max_len: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Multinomial sampling from ``exp(logp / T)``; returns ids and their (differentiable) log-probs."""

    def pick(logp: Tensor, t: int) -> Tensor:
        probs = torch.softmax(logp.detach() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _decode(model, memory, bos, eos, pad, max_len, pick, [bos, pad])
