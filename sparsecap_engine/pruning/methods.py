"""Pruning methods as training plug-ins (the hooks of ``training/hooks.py``), registered by name.

- ``supermask`` (SMP, Tan et al. 2021): mask logits learnt end to end with a sparsity loss.
- ``magnitude``: one-shot magnitude pruning of a trained model, then fine-tuning with fixed masks.
- ``gradual``: Zhu & Gupta (2017) cubic schedule of magnitude pruning during training.
- ``snip``: Lee et al. (2019) connection saliency ``|g ⊙ w|`` at initialisation, then training with fixed masks.
- ``fixed`` / ``lottery``: training with masks given up front (the lottery flow picks the masks and rewinds weights).

Every method masks the same tensors (``masks.prunable``) minus the freeze scopes, reports sparsity at each validation,
lets a checkpoint become ``best`` only when NNZ is within 5 % of the target's, and saves checkpoints with the hard
masks baked into the weights (+ a masks sibling file).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from sparsecap_engine.errors import CheckpointError, UsageError
from sparsecap_engine.pruning.criteria import (
    CRITERIA,
    SNIP_SALIENCY,
    GradualSchedule,
    select,
    select_global,
    snip_scores,
)
from sparsecap_engine.pruning.masks import MaskSet, Supermask, attach
from sparsecap_engine.pruning.report import nnz_within, output_vocabulary, sparsity_report, summary
from sparsecap_engine.pruning.smp_control import cubic_target, keep_thresholds, layer_floors
from sparsecap_engine.pruning.ste import kept_count

PRUNE_METHODS: dict[str, type[PruneMethod]] = {}


def register_method(name: str):
    def wrap(cls: type[PruneMethod]) -> type[PruneMethod]:
        PRUNE_METHODS[name] = cls
        cls.name = name
        return cls

    return wrap


class PruneMethod:
    """Hard 0/1 masks attached at ``attach``; subclasses decide when the masks change."""

    name = ""
    kind = "hard"

    def __init__(
        self,
        sparsity: float,
        freeze: Iterable[str] = (),
        min_density: float = 0.0,
        total_steps: int = 1,
        criterion: str = "blind",
        **_: Any,
    ):
        if not 0.0 <= sparsity < 1.0:
            raise UsageError(f"--sparsity must be in [0, 1), got {sparsity}")
        if not 0.0 <= min_density <= 1.0:
            raise UsageError(f"--min-density must be in [0, 1], got {min_density}")
        if criterion not in CRITERIA:
            raise UsageError(f"unknown criterion {criterion!r}; choose from {', '.join(CRITERIA)}")
        self.target = float(sparsity)
        self.freeze = [p.strip() for p in freeze if p and p.strip()]
        self.min_density = float(min_density)
        self.total_steps = max(1, int(total_steps))
        self.criterion = criterion
        self.model: nn.Module | None = None
        self.masks: MaskSet | None = None
        self.warnings: list[str] = []
        self.last_sparsity: float | None = None

    # ---- hooks ------------------------------------------------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        self.model = model
        self.masks = attach(model, self.kind, self.freeze, **self._attach_args())
        if not self.masks.slots:
            raise UsageError("nothing to prune: every prunable weight is under a --freeze scope")
        self.setup()

    def _attach_args(self) -> dict[str, Any]:
        return {}

    def setup(self) -> None:
        """Called once the masks are attached (one-shot methods compute their masks here)."""

    def before_step(self, step: int) -> None:
        self.masks.begin_step()

    def after_step(self, step: int) -> None:
        self.masks.end_step()

    def report(self, step: int) -> dict[str, Any]:
        rep = sparsity_report(self.model, self.masks.hard())
        overall = rep["pruned"]["sparsity"]
        body: dict[str, Any] = {
            "method": self.name,
            "overall": overall,
            "target": self.target,
            "reached": nnz_within(overall, self.target),
            "nnz": rep["pruned"]["nnz"],
            "numel": rep["pruned"]["numel"],
            "all_params": rep["all"]["sparsity"],
            "layers": {name: t["sparsity"] for name, t in rep["tensors"].items()},
        }
        if self.warnings:
            body["warnings"] = list(self.warnings)
        return body

    def sparsity(self) -> float:
        """Current sparsity over the masked tensors (hard masks)."""
        hard = self.masks.hard()
        numel = sum(m.numel() for m in hard.values())
        kept = int(torch.stack([torch.count_nonzero(m) for m in hard.values()]).sum()) if hard else 0  # one sync
        return 1.0 - kept / max(1, numel)

    def ready(self, step: int) -> bool:
        """May this step's checkpoint become ``best``? Only once NNZ is within 5 % of the target's."""
        self.last_sparsity = self.sparsity()
        return nnz_within(self.last_sparsity, self.target)

    def finalize(self) -> dict[str, Tensor]:
        """The hard 0/1 masks (on CPU)."""
        self.masks.end_step()
        return {name: m.detach().to("cpu").clone() for name, m in self.masks.hard().items()}

    def checkpoint_masks(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The hard masks a checkpoint is saved with (baked into the weights, and in its masks sibling), and the
        sparsity summary for its metadata."""
        hard = self.masks.hard()
        return hard, summary(sparsity_report(self.model, hard), self.target, self.name)

    def state_dict(self) -> dict[str, Any]:
        """What resume needs beyond the model's own state (which holds the raw weights and hard masks)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` on resume (after ``attach``, before the first step)."""

    def end_note(self) -> dict[str, Any]:
        """Extra ``run_end`` fields: the final sparsity and the target (the recipe's ``target_check`` gives the
        verdict and its message, from the final masks)."""
        return {"sparsity": self.sparsity(), "target": self.target}


@register_method("supermask")
class SupermaskMethod(PruneMethod):
    """Supermask pruning (SMP, Tan et al. 2021): ``w ⊙ m`` with mask logits ``s`` learnt end to end with the weights
    through straight-through gradients. Two recipes:

    ``robust`` (default, ``smp_control.py``): ``τ_t`` is the global logit quantile that keeps exactly the scheduled
    density ``1 − s*(t)`` (dense until ``ramp_begin·T``, then cubic, reaching ``s_target`` at ``ramp_end·T``; the
    dense start lets the weights and logits learn before anything is cut: test CIDEr 1.166 vs 1.103 at 95 % on the
    sweep's budget, where the dense baseline scores 1.131), so no loss weight to tune. Training uses
    the mask SMP evaluates with, ``m = [s > τ_t]`` (``sampling = "topk"``), with the identity straight-through
    gradient ``∂L/∂s = ∂L/∂(w ⊙ m) ⊙ w``, so a pruned weight's logit still learns and the weight can come back.
    The logits (init ``5 + 0.001·N(0, 1)``, the noise only breaks ties) learn from the caption loss alone with Adam,
    eps 1e-16 and lr ``init/(cross·T)``; at ``harden_at·T`` the masks freeze to exactly the target's NNZ (one
    global threshold, so SMP's learnt per-layer allocation stays) and the weights fine-tune with fixed masks to the
    end — the reference's ``mask_freeze`` fine-tuning folded into the run. ``sampling = "bernoulli"`` keeps the
    paper's ``m ~ Bernoulli(σ(κ_t(s − τ)))`` with ``∂/∂s`` through ``σ'``: measured on the embedded data it drops
    ~27 % of the weights at random per step at the start (``σ(1)``: every logit sits one above the threshold) and
    half of those near ``τ`` later, and trains far worse (loss 2.6 vs 1.6 at step 100, test CIDEr 0.43 vs 0.80 at
    95 %). ``sharpen`` κ > 1 grows ``κ_t`` geometrically from 1 to κ at the ramp's end (Bernoulli only).

    ``paper`` (the reference's exact recipe, ``τ = 0``, Bernoulli): ``L = L_caption + λ·(1 − a_t)·|s_target − S|``,
    ``S = 1 − Σ round(σ(s))/N``, ``a_t = (1 + cos(π·min(1, t/T)))/2``, ``λ`` auto (−1) ``max(5, 0.5/(1 − s_target))``
    for Up-Down, ``max(5, 1.5/(1 − s_target))`` otherwise; mask Adam lr 100, eps 1e-2, init 5, no schedule. Mask
    gradients are not clipped (the recipe clips the scheduled groups only; they are far below the reference's 0.1).
    """

    kind = "supermask"
    RECIPES = ("robust", "paper")

    def __init__(
        self,
        sparsity: float,
        recipe: str = "robust",
        mask_init: float = 5.0,
        mask_lr: float = -1.0,
        mask_eps: float = -1.0,
        sparsity_weight: float = -1.0,
        ramp_end: float = 0.6,
        harden_at: float = 0.8,
        cross: float = 0.1,
        sharpen: float = 1.0,
        sampling: str = "",
        layer_share: float = 0.0,
        ramp_begin: float = 0.2,
        **kw: Any,
    ):
        super().__init__(sparsity, **kw)
        for flag, value in (("--mask-init", mask_init), ("--mask-lr", mask_lr), ("--mask-eps", mask_eps),
                            ("--sparsity-weight", sparsity_weight)):
            if not math.isfinite(value):  # NaN logits prune everything; a NaN rate or weight poisons the masks
                raise UsageError(f"supermask {flag} must be a finite number, got {value}")
        #: robust: the fraction of the run trained dense before the cubic ramp starts
        self.ramp_begin = float(ramp_begin)
        #: robust: each tensor keeps at least this share of its fair ``(1 − s)·n`` (0: off; measured at 99.1 % on
        #: the embedded data, 0.25 did not prevent the collapse and scored lower: val CIDEr-D 0.235 vs 0.374)
        if layer_share < 0:
            raise UsageError(f"supermask layer_share must be ≥ 0, got {layer_share}")
        self.layer_share = float(layer_share)
        sampling = sampling or ("topk" if recipe == "robust" else "bernoulli")
        if sampling not in ("bernoulli", "topk"):
            raise UsageError(f"unknown supermask sampling {sampling!r}; choose from bernoulli, topk")
        self.sampling = sampling
        if recipe not in self.RECIPES:
            raise UsageError(f"unknown supermask recipe {recipe!r}; choose from {', '.join(self.RECIPES)}")
        if not 0.0 <= ramp_begin < ramp_end <= harden_at <= 1.0:
            raise UsageError(f"supermask needs 0 ≤ ramp_begin < ramp_end ≤ harden_at ≤ 1, got {ramp_begin}, "
                             f"{ramp_end} and {harden_at}")
        if cross <= 0:
            raise UsageError(f"supermask cross must be > 0, got {cross}")
        self.recipe = recipe
        robust = recipe == "robust"
        self.mask_init = float(mask_init)
        auto_lr = self.mask_init / (cross * self.total_steps) if robust else 100.0
        self.mask_lr = float(mask_lr) if mask_lr > 0 else auto_lr
        self.mask_eps = float(mask_eps) if mask_eps > 0 else (1e-16 if robust else 1e-2)
        self.sparsity_weight = float(sparsity_weight)
        self.ramp_end = float(ramp_end)
        if sharpen < 1.0:
            raise UsageError(f"supermask sharpen must be ≥ 1, got {sharpen}")
        self.sharpen = float(sharpen)
        self.harden_step = int(round(harden_at * self.total_steps)) if robust else None
        self.hardened_at: int | None = None
        self._tau_step: int | None = None  # the step the current threshold τ was set for
        self.history: list[tuple[int, float, float]] = []  # robust: (step, sparsity, scheduled) per step
        self._loss_info: tuple[Tensor, float, Tensor] | None = None

    def _attach_args(self) -> dict[str, Any]:
        return {"init": self.mask_init}

    def setup(self) -> None:
        if self.recipe == "paper":
            if self.sparsity_weight < 0:
                name = (getattr(self.model, "config", None) or {}).get("name", "")
                factor = 0.5 if name == "updown" else 1.5
                self.sparsity_weight = max(5.0, factor / (1.0 - self.target))
            return
        with torch.no_grad():
            for t in self.logits():
                t.add_(torch.randn_like(t), alpha=1e-3)  # ties broken at random: the quantile keeps exactly k
        for slot in self.masks.slots.values():
            slot.topk = self.sampling == "topk"
            slot.count_kept = False  # the threshold sets the sparsity: no loss reads the count

    def logits(self) -> list[Tensor]:
        return [slot.logits for slot in self.masks.slots.values()]

    def param_groups(self) -> list[dict[str, Any]]:
        for name, slot in self.masks.slots.items():
            assert isinstance(slot, Supermask)
            module, pname = self.masks.owners[name][0]
            slot.move_to(module.parametrizations[pname].original.device)
        fused = all(t.device.type in ("cpu", "cuda") for t in self.logits())  # fused Adam: one pass over 53 M logits
        return [{"params": self.logits(), "lr": self.mask_lr, "eps": self.mask_eps, "weight_decay": 0.0,
                 "fused": fused, "pruning_mask": True}]

    @property
    def hardened(self) -> bool:
        return self.hardened_at is not None

    def scheduled(self, step: int) -> float:
        """robust: the sparsity ``s*(t)`` the threshold keeps at step ``t``."""
        return cubic_target(step, self.total_steps, self.target, self.ramp_end, self.ramp_begin)

    def sharpness(self, step: int) -> float:
        """robust: ``κ_t``, from 1 at the ramp's start to ``sharpen`` at its end (geometric)."""
        begin = self.ramp_begin * self.total_steps
        x = min(1.0, max(0.0, step - begin) / max(1.0, self.ramp_end * self.total_steps - begin))
        return self.sharpen**x

    def thresholds(self, sparsity: float) -> list[float]:
        """robust: ``τ_i`` per masked tensor keeping exactly ``sparsity`` overall, each tensor its floor at least."""
        numels = [t.numel() for t in self.logits()]
        return keep_thresholds(self.logits(), sparsity, layer_floors(numels, sparsity, self.layer_share,
                                                                      self.min_density))

    def _set_threshold(self, step: int) -> None:
        kappa = self.sharpness(step)
        for slot, tau in zip(self.masks.slots.values(), self.thresholds(self.scheduled(step)), strict=True):
            slot.shift, slot.scale = tau, kappa
        self._tau_step = step

    def before_step(self, step: int) -> None:
        if self.recipe == "robust" and not self.hardened and self._tau_step != step:
            self._set_threshold(step)  # first step (or a resumed run): after_step keeps it current otherwise
        super().before_step(step)

    def anneal(self, step: int) -> float:
        """paper: ``1 − a_t``, the weight's cosine ramp from 0 (start) to 1 (end of training)."""
        return 1.0 - (1.0 + math.cos(math.pi * min(1.0, step / self.total_steps))) / 2.0

    def extra_loss(self, step: int) -> Tensor | None:
        if self.recipe == "robust":
            return None  # the threshold sets the sparsity; the logits learn from the caption loss alone
        slots = list(self.masks.slots.values())
        numel = sum(slot.logits.numel() for slot in slots)
        # the count comes from the same node as the sampled weight when the forward pass used it (one σ'(s) pass)
        kept = torch.stack([k if (k := slot.step_kept()) is not None else kept_count(slot.logits) for slot in slots])
        s_now = 1.0 - kept.sum() / numel
        raw = (self.target - s_now).abs()
        ramp = self.anneal(step)
        loss = raw * (self.sparsity_weight * ramp)
        self._loss_info = (raw.detach(), ramp, loss.detach())
        return loss

    def after_step(self, step: int) -> None:
        super().after_step(step)
        if self.recipe != "robust" or self.hardened:
            return
        if step + 1 >= self.harden_step:
            self.harden(step + 1)
            return
        self._set_threshold(step + 1)  # hard masks between steps (validation, checkpoints) follow the schedule
        self.history.append((step + 1, self.sparsity(), self.scheduled(step + 1)))

    def state_dict(self) -> dict[str, Any]:
        slots = self.masks.slots.items()
        return {
            "logits": {name: slot.logits.detach().clone() for name, slot in slots},
            "fixed": {name: slot.fixed.clone() for name, slot in slots if slot.fixed is not None},
            "hardened_at": self.hardened_at,
            "sparsity_weight": self.sparsity_weight,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        logits, fixed = state.get("logits", {}), state.get("fixed", {})
        if set(logits) != set(self.masks.slots):
            raise CheckpointError("the saved supermask logits do not match this model's prunable weights")
        with torch.no_grad():
            for name, slot in self.masks.slots.items():
                slot.logits.copy_(logits[name].to(slot.logits.device))  # in place: the optimiser holds these
                slot.clear()
        self.hardened_at = state.get("hardened_at")
        self.sparsity_weight = float(state.get("sparsity_weight", self.sparsity_weight))
        if self.hardened_at is not None:
            for (name, slot), tau in zip(self.masks.slots.items(), self.thresholds(self.target), strict=True):
                slot.shift = tau
                slot.fix(fixed[name])
        self._tau_step = None  # before_step sets τ for the resumed step

    def harden(self, step: int) -> None:
        """Freeze every mask to the top ``(1 − s_target)·N`` logits (exactly the target's NNZ; layer floors kept)."""
        for slot, tau in zip(self.masks.slots.values(), self.thresholds(self.target), strict=True):
            slot.shift = tau
            slot.fix(slot.logits.detach() > tau)
        self.hardened_at = step

    @property
    def loss_info(self) -> dict[str, float]:
        if self._loss_info is None:
            return {}
        raw, ramp, scaled = self._loss_info
        return {"sparsity_loss": float(raw), "anneal": ramp, "sparsity_loss_scaled": float(scaled)}

    def report(self, step: int) -> dict[str, Any]:
        body = super().report(step)
        body["recipe"] = self.recipe
        if self.recipe == "paper":
            body["sparsity_weight"] = self.sparsity_weight
            body.update(self.loss_info)
        else:
            body["scheduled"] = self.scheduled(step)
            body["hardened_at"] = self.hardened_at
        return body


@register_method("magnitude")
class MagnitudeMethod(PruneMethod):
    """One-shot magnitude pruning of the attached (trained) weights: ``blind`` keeps the globally largest ``|w|``,
    ``uniform`` the largest per layer, ``dist`` the globally largest ``|(w − μ_l)/σ_l|``; masks then stay fixed."""

    def setup(self) -> None:
        sel = select(self.criterion, self.masks.weights(), self.target, min_density=self.min_density)
        self.masks.set(sel.masks)
        self.warnings = sel.warnings()


@register_method("gradual")
class GradualMethod(PruneMethod):
    """Gradual magnitude pruning (Zhu & Gupta 2017): after step ``t = t0 + kΔt`` prune to
    ``s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³`` by the criterion, over the surviving weights (no regrowth)."""

    def __init__(
        self,
        sparsity: float,
        start: int | None = None,
        end: int | None = None,
        every: int | None = None,
        initial_sparsity: float = 0.0,
        **kw: Any,
    ):
        super().__init__(sparsity, **kw)
        self.schedule = GradualSchedule.scaled(self.total_steps, self.target, start, end, every, initial_sparsity)
        self.history: list[tuple[int, float, float]] = []  # (step, scheduled s_t, achieved sparsity)

    def after_step(self, step: int) -> None:
        super().after_step(step)
        t = step + 1
        s_t = self.schedule.at(t)
        if s_t is None:
            return
        sel = select(self.criterion, self.masks.weights(), s_t, self.masks.hard(), self.min_density)
        self.masks.set(sel.masks)
        self.warnings = sel.warnings()
        self.history.append((t, s_t, self.sparsity()))

    def report(self, step: int) -> dict[str, Any]:
        body = super().report(step)
        body["schedule"] = {"start": self.schedule.start, "end": self.schedule.end, "every": self.schedule.every,
                            "scheduled": self.schedule.at(step) if self.schedule.at(step) is not None else None}
        return body


#: SNIP's saliency batches: each is a forward and backward pass before the first step
MAX_SNIP_BATCHES = 10_000
#: output rows no caption targets (<pad>, <bos>, ...): empty ones are no loss
SPECIAL_ROWS = 4


@register_method("snip")
class SnipMethod(PruneMethod):
    """SNIP (Lee et al. 2019): before the first step, saliency ``|g ⊙ w|`` with ``g`` the gradient of the caption loss
    summed over ``snip_batches`` batches at initialisation; keep the globally largest; masks then stay fixed.
    ``snip_saliency="signed"`` ranks by the reference's signed, sum-normalised ``g ⊙ w`` instead.

    ``loss_fn(model, i) -> loss`` (the i-th saliency batch) is set by the flow that builds the run."""

    def __init__(self, sparsity: float, snip_batches: int = 1, snip_saliency: str = "abs", **kw: Any):
        super().__init__(sparsity, **kw)
        if not 1 <= snip_batches <= MAX_SNIP_BATCHES:
            raise UsageError(f"--snip-batches must be between 1 and {MAX_SNIP_BATCHES}, got {snip_batches}")
        if snip_saliency not in SNIP_SALIENCY:
            raise UsageError(f"unknown prune.snip_saliency {snip_saliency!r}; choose from {', '.join(SNIP_SALIENCY)}")
        self.snip_batches = int(snip_batches)
        self.snip_saliency = snip_saliency
        self.loss_fn: Callable[[nn.Module, int], Tensor] | None = None
        #: multi-process runs: averages the summed gradients over the ranks before the selection (in place)
        self.reduce: Callable[[list[Tensor]], None] | None = None
        self.done = False

    def saliency(self) -> dict[str, Tensor]:
        """``Σ_b ∂L_b/∂w`` ⊙ ``w`` → |·| for each masked weight (masks are all ones, so ∂L/∂w = ∂L/∂(w ⊙ m))."""
        if self.loss_fn is None:
            raise UsageError("snip needs training batches (loss_fn) to compute saliency")
        weights = self.masks.weights()
        grads = {name: torch.zeros_like(w) for name, w in weights.items()}
        for i in range(self.snip_batches):
            self.model.zero_grad(set_to_none=True)
            self.loss_fn(self.model, i).backward()
            for name, w in weights.items():
                if w.grad is not None:
                    grads[name] += w.grad
        self.model.zero_grad(set_to_none=True)
        if self.reduce is not None:
            self.reduce(list(grads.values()))
        return snip_scores(weights, grads, saliency=self.snip_saliency)

    def prune_now(self) -> None:
        sel = select_global(self.saliency(), self.target, self.min_density)
        self.masks.set(sel.masks)
        self.warnings = sel.warnings() + self.vocabulary_warnings(sel.masks)
        self.done = True

    def vocabulary_warnings(self, masks: dict[str, Tensor]) -> list[str]:
        """``|g ⊙ w|`` ranks a word's output row by how often the saliency batches use it (a word that is no target
        there gets only ``p ≈ 1/V``), so with a large vocabulary the output layer keeps a few hundred frequent words
        (``benchmarks/snip_vocab.py``; more batches do not widen it): say so when more than the special tokens and 1 %
        of the vocabulary can no longer be chosen."""
        vocab = output_vocabulary(self.model, masks)
        if vocab is None:
            return []
        dead = vocab["words"] - vocab["emit"]
        if dead <= max(SPECIAL_ROWS, 0.01 * vocab["words"]):
            return []
        return [f"{vocab['layer']}: {dead:,} of {vocab['words']:,} words keep no output weight, so the model can never "
                "choose them (SNIP ranks each word's output row by how often its saliency batches use the word)"]

    def before_step(self, step: int) -> None:
        if not self.done:
            self.prune_now()
        super().before_step(step)

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}  # the masks themselves are in the model's state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = bool(state.get("done", self.done))


@register_method("fixed")
class FixedMethod(PruneMethod):
    """Train (or fine-tune) with masks given up front (from a pruned checkpoint, or chosen by the lottery flow)."""

    def __init__(self, sparsity: float, masks: dict[str, Tensor] | None = None, **kw: Any):
        super().__init__(sparsity, **kw)
        if masks is None:
            raise UsageError(f"{self.name or 'fixed'} needs masks (--from a pruned run)")
        self.given = masks

    def attach(self, model: nn.Module) -> None:
        self.model = model
        self.masks = attach(model, "hard", (), names=list(self.given))
        unknown = sorted(set(self.given) - set(self.masks.slots))
        if unknown:
            raise CheckpointError(f"masks do not fit the model: no prunable weight {unknown[0]!r}")
        for name, m in self.given.items():
            if tuple(m.shape) != tuple(self.masks.slots[name].hard().shape):
                raise CheckpointError(f"mask {name!r} has shape {tuple(m.shape)}, the model's weight differs")
        self.masks.set(self.given)


@register_method("lottery")
class LotteryMethod(FixedMethod):
    """Lottery ticket (Frankle & Carbin 2019): masks from a trained run, weights rewound; the flow does the rest."""


def build_method(name: str, **options: Any) -> PruneMethod:
    if name not in PRUNE_METHODS:
        raise UsageError(f"unknown pruning method {name!r}; choose from {', '.join(sorted(PRUNE_METHODS))}")
    return PRUNE_METHODS[name](**options)
