"""Self-critical sequence training (SCST, Rennie et al. 2017) as a fine-tuning stage from a trained run.

For each image, n captions w¹..wⁿ are drawn from the model (multinomial sampling at T = 1, or the n beams of a beam
search), each gets a reward r(w) and a baseline b, and the loss is the policy gradient with that baseline
(``RewardCriterion``, reference §3.4–3.5):

    L = −Σ_j Σ_t (r(wʲ) − bʲ) · log p(wʲ_t | wʲ_<t, I) · m_t / Σ m_t        m_t = 1 for every sampled token (<eos> too)

- reward ``r = w_C · CIDEr-D + Σ_n w_Bn · BLEU-n`` against the image's references; CIDEr-D's document frequencies come
  from the *training* references (cached in the run as ``cider_df.json``), hypotheses and references are the same
  word tokens (reference §9 item 10 used a different vocabulary for df);
- baseline ``greedy``: the reward of the greedy caption, decoded in eval mode (test-time inference, the "self" of
  self-critical), or ``mean``: the leave-one-out mean of the other samples, ``bʲ = (Σ_k r(wᵏ) − r(wʲ)) / (n − 1)``
  (Luo 2020); it needs n ≥ 2 (reference §9 item 29 divided by zero);
- ``beam`` samples are decoded without gradient and their log-probs recomputed by teacher forcing, so any model works
  through ``forward``.

The stage reuses the XE recipe (data, validation, checkpoints, events, hooks) with this module's objective. A source
run that was pruned (its checkpoint has a ``.masks`` sibling) is fine-tuned with the pruning package's ``fixed``
method as hooks, so its masks stay as they are.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sparsecap_engine.decoding.beam import beam_search
from sparsecap_engine.decoding.constraints import Constraints
from sparsecap_engine.decoding.greedy import greedy, sample
from sparsecap_engine.errors import UsageError
from sparsecap_engine.metrics.bleu import batch_bleu
from sparsecap_engine.metrics.cider import CiderD
from sparsecap_engine.metrics.ngrams import count_ngrams
from sparsecap_engine.models.base import CaptionModel
from sparsecap_engine.runs import RunDir
from sparsecap_engine.training.distributed import current
from sparsecap_engine.training.objectives import Objective

SAMPLERS = ("random", "beam")
BASELINES = ("greedy", "mean")
DF_FILE = "cider_df.json"


@dataclass
class ScstOptions:
    """The ``[scst]`` section of a run's config."""

    source: str = ""
    source_checkpoint: str = "best"
    samples: int = 5
    sample: str = "random"
    baseline: str = "greedy"
    cider_weight: float = 1.0
    bleu_weights: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScstOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise UsageError(f"[scst]: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> ScstOptions:
        """``UsageError`` for values that cannot work (before any run directory is touched); returns self."""
        if not self.source:
            raise UsageError("SCST needs a trained run to start from (--from RUN)")
        if self.sample not in SAMPLERS:
            raise UsageError(f"unknown --scst-sample {self.sample!r}; choose from {', '.join(SAMPLERS)}")
        if self.baseline not in BASELINES:
            raise UsageError(f"unknown --scst-baseline {self.baseline!r}; choose from {', '.join(BASELINES)}")
        if self.samples < 1:
            raise UsageError(f"--scst-samples must be at least 1 (got {self.samples})")
        if self.samples > 1000:  # captions drawn per image and step
            raise UsageError(f"--scst-samples must be at most 1000 (got {self.samples})")
        if self.baseline == "mean" and self.samples < 2:
            raise UsageError("--scst-baseline mean is the mean of the other samples: it needs --scst-samples >= 2")
        if len(self.bleu_weights) > 4:
            raise UsageError(f"--bleu-weight takes at most 4 weights (BLEU-1..4), got {len(self.bleu_weights)}")
        weights = [self.cider_weight, *self.bleu_weights]
        if not all(math.isfinite(w) for w in weights):
            raise UsageError(f"reward weights must be finite numbers, got {weights}")
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise UsageError("reward weights must be >= 0 and not all zero (--cider-weight, --bleu-weight)")
        return self


# ------------------------------------------------------------------------------------------------------------ reward
class CaptionReward:
    """``r = w_C · CIDEr-D + Σ_n w_Bn · BLEU-n`` of hypotheses against the references of their images.

    ``refs[i]`` are the references (space-joined words) of training image i; n-grams are counted once per batch for
    both metrics.
    """

    def __init__(self, refs: Sequence[Sequence[str]], cider: CiderD, cider_weight: float = 1.0,
                 bleu_weights: Sequence[float] = (0.0, 0.0, 0.0, 0.0)):
        self.refs = [list(r) for r in refs]
        self.cider = cider
        self.cider_weight = float(cider_weight)
        self.bleu_weights = np.zeros(4)
        self.bleu_weights[: len(bleu_weights)] = np.asarray(bleu_weights, np.float64)

    @classmethod
    def for_run(cls, run: RunDir, refs: Sequence[Sequence[str]], opts: ScstOptions) -> CaptionReward:
        """Document frequencies of ``refs`` (the training references), read from or written to ``run/cider_df.json``."""
        path = run.path / DF_FILE
        if path.is_file():
            cider = CiderD.load_df(path)
        else:
            cider = CiderD.from_refs(dict(enumerate(refs)))
            if current().is_main:  # rank 0 alone writes into the run
                cider.save_df(path)
        return cls(refs, cider, opts.cider_weight, opts.bleu_weights)

    def __call__(self, hyps: Sequence[str], images: Sequence[int]) -> np.ndarray:
        """Reward of ``hyps[h]`` as a caption of training image ``images[h]``."""
        order = list(dict.fromkeys(int(i) for i in images))
        position = {img: k for k, img in enumerate(order)}
        batch = count_ngrams([self.refs[i] for i in order], list(hyps), [position[int(i)] for i in images], 4)
        reward = np.zeros(len(hyps))
        if self.cider_weight:
            reward += self.cider_weight * self.cider.batch_scores(batch)
        if self.bleu_weights.any():
            reward += batch_bleu(batch, 4)[1] @ self.bleu_weights
        return reward


def leave_one_out(rewards: np.ndarray) -> np.ndarray:
    """(B, n) rewards → each sample's baseline: the mean reward of the other n − 1 samples of its image."""
    n = rewards.shape[1]
    if n < 2:
        raise UsageError("the mean baseline needs at least 2 samples per image")
    return (rewards.sum(1, keepdims=True) - rewards) / (n - 1)


def reward_loss(logprobs: Tensor, mask: Tensor, advantage: Tensor, count: Tensor | None = None) -> Tensor:
    """``−Σ log p · m · (r − b) / Σ m`` over (N, T) token log-probs, their mask and the (N,) advantages (``count``
    replaces ``Σ m``: multi-process runs normalise by the global token count, ``training/distributed.py``)."""
    m = mask.to(logprobs.dtype)
    total = m.sum().clamp_min(1.0) if count is None else count.to(logprobs.dtype).clamp_min(1e-12)
    return -(logprobs * m * advantage.to(logprobs.dtype).unsqueeze(1)).sum() / total


# --------------------------------------------------------------------------------------------------------- objective
def scst_objective(opts: ScstOptions, vocab, reward: Callable[[Sequence[str], Sequence[int]], np.ndarray],
                   max_len: int, seed: int = 0) -> Objective:
    """The recipe's per-step loss for SCST (see the module docstring)."""
    n = opts.samples
    rules = Constraints.for_vocab(vocab)
    ids = dict(bos=vocab.bos_id, eos=vocab.eos_id, pad=vocab.pad_id, max_len=max_len)

    def objective(model: CaptionModel, data, index: list[int], step: int) -> tuple[Tensor, dict[str, float]]:
        dist = current()
        index = dist.part(index)  # this process's block of the global batch, its own samples
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in data.image_batch(index).items()}
        memory = model.encode(batch)
        expanded = model.expand_memory(memory, n)
        if opts.sample == "random":
            gen = torch.Generator(device=device).manual_seed(seed * 7919 + step + 1_000_003 * dist.rank)
            seqs, token_logp = sample(model, expanded, generator=gen, constraints=rules, **ids)
        else:
            with torch.no_grad():
                detached = {k: v.detach() for k, v in memory.items()}
                seqs = beam_search(model, detached, beam_size=n, n_best=n, constraints=rules, **ids).tokens
            seqs = seqs.flatten(0, 1)
            inputs = torch.cat([torch.full_like(seqs[:, :1], vocab.bos_id), seqs[:, :-1]], 1)
            token_logp = model(expanded, inputs).float().gather(2, seqs.unsqueeze(2)).squeeze(2)
        mask = seqs != vocab.pad_id
        images = np.repeat(np.asarray(index), n)
        rewards = reward([vocab.decode(s) for s in seqs.tolist()], images).reshape(len(index), n)
        if opts.baseline == "greedy":
            base = _greedy_reward(model, batch, vocab, rules, ids, reward, index)[:, None]
        else:
            base = leave_one_out(rewards)
        advantage = torch.as_tensor((rewards - base).reshape(-1), device=device)
        loss = reward_loss(token_logp, mask, advantage, dist.share(mask.sum()) if dist.active else None)
        info = {"items": len(index) * n, "reward": float(rewards.mean()), "baseline": float(base.mean())}
        return loss, info

    return objective


def _greedy_reward(model: CaptionModel, batch, vocab, rules, ids, reward, index) -> np.ndarray:
    """Reward of the test-time caption (greedy, eval mode: no dropout), computed without gradient."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            seqs = greedy(model, model.encode(batch), constraints=rules, **ids)
    finally:
        model.train(was_training)
    return reward([vocab.decode(s) for s in seqs.tolist()], index)
