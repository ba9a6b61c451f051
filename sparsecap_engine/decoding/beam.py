"""Batched beam search, vectorised over images and beams: one ``step`` call per time step for all B×K hypotheses.

At step t every active hypothesis y (running log-prob s(y) = Σ log p) is extended by every token w; the candidates
of an image are ranked by ``s(y) + log p(w | y)`` over its K×V continuations (the top 2K are kept, enough to hold K
that do not end). Then, as in common beam search (ruotianluo's ``beam_search``, reference §1.7, and Wu et al. 2016):

- a candidate ending with ``<eos>`` among the top K (every top-K candidate at the last step) is *finished*: it joins
  the image's n best finished hypotheses, ranked by the length-penalised score ``s / lp(|y|)``, |y| counting ``<eos>``;
- the K best candidates that do not end stay *active*; caches follow them through ``reorder_state``;
- an image stops once no active hypothesis can still beat its n-th finished one: log-probs only fall, so
  ``s / lp(max_len)`` bounds every completion of y (lp grows with length and is ≥ 1). Stopped images leave the batch.

Length penalties (``length_penalty``): ``""`` (none, lp = 1), ``"wu_α"`` (GNMT, ``lp = ((5 + |y|) / 6)^α``),
``"avg"`` (``lp = |y|``, the mean log-prob). Token rules (min length, n-gram blocking, bad endings, radix ``<eos>``
at word boundaries) come from :class:`~sparsecap_engine.decoding.constraints.Constraints`.

With K = 1 and no length penalty this is greedy decoding; with K ≥ Vᴸ it is exhaustive search.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sparsecap_engine.decoding.constraints import Constraints
from sparsecap_engine.errors import UsageError
from sparsecap_engine.models.base import CaptionModel, Memory, index_batch, step_function

NEG_INF = float("-inf")
LENGTH_PENALTIES = "none, wu_<alpha> (e.g. wu_0.9), avg"


@dataclass
class BeamResult:
    """The ``n`` best finished hypotheses of each image, best first."""

    tokens: Tensor  # (B, n, T) ids, <eos> included, <pad> after it
    scores: Tensor  # (B, n) ranking scores: summed log-prob / lp(length)
    logprobs: Tensor  # (B, n) summed log-probs

    @property
    def best(self) -> Tensor:
        """(B, T) ids of each image's best hypothesis."""
        return self.tokens[:, 0]


def length_penalty_fn(spec: str) -> Callable[[int], float]:
    """``lp(length)`` for ``""``/``none``, ``wu_α`` or ``avg``."""
    spec = (spec or "none").strip().lower()
    if spec == "none":
        return lambda n: 1.0
    if spec == "avg":
        return lambda n: float(max(1, n))
    m = re.fullmatch(r"wu_?([0-9]*\.?[0-9]+)", spec)
    if m:
        alpha = float(m.group(1))
        return lambda n: ((5.0 + n) / 6.0) ** alpha
    raise UsageError(f"unknown length penalty {spec!r}; choose from {LENGTH_PENALTIES}")


def beam_search(
    model: CaptionModel,
    memory: Memory,
    bos: int,
    eos: int,
    pad: int,
    max_len: int,
    beam_size: int,
    n_best: int = 1,
    length_penalty: str = "",
    constraints: Constraints | None = None,
) -> BeamResult:
    """Beam search of width ``beam_size`` for every image of ``memory``; returns the ``n_best`` best of each."""
    if beam_size < 1 or not 1 <= n_best <= beam_size:
        raise UsageError(f"beam search needs beam >= 1 and 1 <= n-best <= beam (got {beam_size}, {n_best})")
    if max_len < 1:
        raise UsageError("max_len must be at least 1")
    lp = length_penalty_fn(length_penalty)
    rules = constraints or Constraints(eos, (bos, pad))
    first = next(iter(memory.values()))
    b, k, device = first.shape[0], beam_size, first.device

    mem = model.expand_memory(memory, k)  # row i·K + j = beam j of image i
    state = model.init_state(mem)
    step = step_function(model)
    tokens = torch.full((b * k,), bos, dtype=torch.long, device=device)
    history = torch.full((b * k, max_len), pad, dtype=torch.long, device=device)
    sums = torch.full((b, k), NEG_INF, device=device)
    sums[:, 0] = 0.0  # all beams start identical: only the first one may expand at step 0
    fin_tokens = torch.full((b, n_best, max_len), pad, dtype=torch.long, device=device)
    fin_scores = torch.full((b, n_best), NEG_INF, device=device)
    fin_sums = torch.full((b, n_best), NEG_INF, device=device)
    alive = torch.arange(b, device=device)  # images still searching, in the order of the active rows
    last_t = 0
    for t in range(max_len):
        last_t = t
        n = alive.numel()
        logp, state = step(mem, tokens, state)
        logp = rules.apply(logp.float(), t, history[:, :t])
        v = logp.shape[-1]
        width = min(2 * k, k * v)
        top, idx = (sums.reshape(-1, 1) + logp).reshape(n, k * v).topk(width, dim=1)
        beam, tok = idx // v, idx % v
        rows = (torch.arange(n, device=device) * k).unsqueeze(1) + beam  # (n, width) source row of each candidate
        rank = torch.arange(width, device=device).expand(n, width)
        final = t == max_len - 1
        ends = (tok == eos) if not final else torch.ones_like(tok, dtype=torch.bool)
        finish = ends & (rank < k) & torch.isfinite(top)

        # finished candidates join the n best of their image
        if bool(finish.any()):
            cand = history[rows.reshape(-1)].reshape(n, width, max_len)
            cand[:, :, t] = tok
            scores = torch.where(finish, top / lp(t + 1), torch.full_like(top, NEG_INF))
            pool_scores = torch.cat([fin_scores[alive], scores], 1)
            best, pick = pool_scores.topk(n_best, dim=1)
            pool_tokens = torch.cat([fin_tokens[alive], cand], 1)
            fin_tokens[alive] = pool_tokens.gather(1, pick[..., None].expand(-1, -1, max_len))
            fin_sums[alive] = torch.cat([fin_sums[alive], top.masked_fill(~finish, NEG_INF)], 1).gather(1, pick)
            fin_scores[alive] = best
        if final:
            break

        # the K best candidates that do not end stay active (candidates ending at rank >= K are dropped)
        order = torch.where(tok == eos, rank + width, rank).topk(k, dim=1, largest=False).indices.sort(dim=1).values
        sums = top.gather(1, order)
        src = rows.gather(1, order).reshape(-1)
        tokens = tok.gather(1, order).reshape(-1)
        history = history.index_select(0, src)
        history[:, t] = tokens
        state = model.reorder_state(state, src)

        # stop the images that no active hypothesis can improve any more
        bound = sums.max(dim=1).values / lp(max_len)
        done = fin_scores[alive, -1] >= bound
        if bool(done.all()):
            break
        if bool(done.any()):
            keep = torch.nonzero(~done).squeeze(1)
            keep_rows = (keep.unsqueeze(1) * k + torch.arange(k, device=device)).reshape(-1)
            alive, sums = alive[keep], sums[keep]
            mem = index_batch(mem, keep_rows)
            state = model.reorder_state(state, keep_rows)
            tokens, history = tokens[keep_rows], history[keep_rows]
    filled = torch.nonzero((fin_tokens[:, :, : last_t + 1] != pad).flatten(0, 1).any(0))
    used = int(filled.max()) + 1 if filled.numel() else 1  # drop the columns that are padding everywhere
    return BeamResult(fin_tokens[:, :, :used], fin_scores, fin_sums)
