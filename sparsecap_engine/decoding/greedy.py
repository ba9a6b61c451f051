"""Greedy decoding and sampling (temperature, top-k, top-p) over the model interface (``init_state``/``step``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sparsecap_engine.decoding.constraints import Constraints
from sparsecap_engine.errors import UsageError
from sparsecap_engine.models.base import CaptionModel, Memory, step_function

Pick = Callable[[Tensor, int], Tensor]


def _decode(
    model: CaptionModel,
    memory: Memory,
    bos: int,
    eos: int,
    pad: int,
    max_len: int,
    pick: Pick,
    constraints: Constraints | None,
) -> tuple[Tensor, Tensor]:
    """One token per row and step until every row has emitted ``<eos>`` or ``max_len`` tokens.

    Returns the (B, T) ids (``pad`` after ``<eos>``) and the (B, T) log-probs of the chosen tokens (0 after ``<eos>``),
    differentiable when the model is.
    """
    if max_len < 1:  # (the loop below would end with nothing to stack)
        raise UsageError("max_len must be at least 1")
    first = next(iter(memory.values()))
    b, device = first.shape[0], first.device
    rules = constraints or Constraints(eos, (bos, pad))
    state = model.init_state(memory)
    step = step_function(model)
    tokens = torch.full((b,), bos, dtype=torch.long, device=device)
    history = torch.full((b, max_len), pad, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    logps = []
    t = 0
    for t in range(max_len):
        logp, state = step(memory, tokens, state)
        logp = rules.apply(logp.float(), t, history[:, :t])
        tokens = pick(logp, t)
        chosen = logp.gather(1, tokens.unsqueeze(1)).squeeze(1)
        tokens = tokens.masked_fill(done, pad)
        history[:, t] = tokens
        logps.append(chosen.masked_fill(done, 0.0))
        done = done | (tokens == eos)
        if bool(done.all()):
            break
    return history[:, : t + 1], torch.stack(logps, 1)


@torch.no_grad()
def greedy(
    model: CaptionModel,
    memory: Memory,
    bos: int,
    eos: int,
    pad: int,
    max_len: int,
    constraints: Constraints | None = None,
) -> Tensor:
    """Argmax at each step; tokens after ``<eos>`` are ``pad``. Returns (B, T) ids (``<eos>`` included)."""
    seqs, _ = _decode(model, memory, bos, eos, pad, max_len, lambda lp, t: lp.argmax(-1), constraints)
    return seqs


def filter_logprobs(logp: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """``logp / T`` with everything outside the ``top_k`` most likely tokens and outside the nucleus (the smallest set
    whose probability reaches ``top_p``, Holtzman et al. 2020) set to −inf; the most likely token always stays."""
    if not 0 < temperature < float("inf"):
        raise UsageError(f"temperature must be a finite number > 0 (got {temperature})")
    if top_k < 0 or not 0.0 < top_p <= 1.0:
        raise UsageError(f"sampling needs top_k >= 0 and 0 < top_p <= 1 (got {top_k}, {top_p})")
    x = logp / temperature
    if 0 < top_k < x.shape[-1]:
        kth = x.topk(top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p < 1.0:
        sorted_x, order = x.sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_x, dim=-1)
        outside = probs.cumsum(-1) - probs >= top_p  # mass before this token already reaches p
        x = x.scatter(1, order, sorted_x.masked_fill(outside, float("-inf")))
    return x


def sample(
    model: CaptionModel,
    memory: Memory,
    bos: int,
    eos: int,
    pad: int,
    max_len: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    top_k: int = 0,
    top_p: float = 1.0,
    constraints: Constraints | None = None,
) -> tuple[Tensor, Tensor]:
    """Multinomial sampling from ``softmax(logp / T)`` (restricted to top-k / top-p when asked).

    Returns the ids and the model's own log-probs of the sampled tokens (not tempered; differentiable, for SCST).
    """
    filter_logprobs(torch.zeros(1, 2), temperature, top_k, top_p)  # check the options once, up front

    def pick(logp: Tensor, t: int) -> Tensor:
        probs = torch.softmax(filter_logprobs(logp.detach(), temperature, top_k, top_p), dim=-1)
        probs = torch.nan_to_num(probs, nan=0.0)
        empty = probs.sum(-1) <= 0  # every token forbidden (tiny vocabularies): fall back to the argmax
        if bool(empty.any()):
            probs[empty] = torch.nn.functional.one_hot(logp[empty].argmax(-1), probs.shape[-1]).to(probs.dtype)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _decode(model, memory, bos, eos, pad, max_len, pick, constraints)
