"""Masks on any ``nn.Module``: attaching them (``torch.nn.utils.parametrize``), finding and baking them. Which weights
are prunable: ``scope.py``; the straight-through estimators: ``ste.py``.

A masked weight is ``w ⊙ m``. The mask lives in a parametrization of the module that owns the weight, so the model
class is unchanged and every access of ``module.weight`` (inside ``forward`` or from a tied module) sees ``w ⊙ m``.

- ``HardMask``: a 0/1 ``mask`` buffer (magnitude, gradual, lottery, SNIP, fixed).
- ``Supermask``: mask logits ``s``; training → ``m ~ Bernoulli(σ(s))``, eval → ``m = round(σ(s))`` (keep iff s > 0),
  both with a straight-through estimator (∂m/∂σ = 1, so ∂L/∂s = ∂L/∂m · σ'(s)). The logits are not registered in the
  model (they have their own optimiser group and are not part of the weights' state dict).

**One mask sample per forward pass of a batch.** Inside a training step (``MaskSet.begin_step`` … ``end_step``) the
masked weight is computed once at its first access and reused: an LSTM cell unrolled over T time steps, or a layer
shared at several depths, sees the same Bernoulli sample for the whole batch (the reference re-samples at every call,
i.e. at every time step). Outside a step, in no-grad mode, the masked weight is cached until the weight, the mask or
the mode changes (validation decodes with one ``w ⊙ round(σ(s))`` per tensor); in grad mode it is recomputed per
access so no autograd graph is reused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from sparsecap_engine.pruning.scope import _raw_param, _scan, in_scope
from sparsecap_engine.pruning.ste import _Supermask

# --------------------------------------------------------------------------------------------------------------------
# parametrizations


class MaskBase(nn.Module):
    """Parametrization ``w ↦ w ⊙ m`` with per-step caching (see the module docstring)."""

    is_mask = True  # what ``scope`` skips when it looks for prunable weights

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0  # bumped once per training step (one mask sample per forward pass of a batch)
        self.in_step = False
        self._cache: tuple[tuple, Tensor] | None = None

    def hard(self) -> Tensor:
        """The 0/1 mask (bool) used in eval and baked into checkpoints."""
        raise NotImplementedError

    def _versions(self) -> tuple:
        raise NotImplementedError

    def _compute(self, w: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, w: Tensor) -> Tensor:
        grad = torch.is_grad_enabled()
        key = (self.training, grad, self.generation, w._version, w.device, w.dtype, *self._versions())
        reuse = self.in_step or not grad
        if reuse and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        out = self._compute(w)
        self._cache = (key, out) if reuse else None
        return out

    def clear(self) -> None:
        self._cache = None


class HardMask(MaskBase):
    """A fixed 0/1 mask buffer (moves with the model, replaced in place by ``set``)."""

    def __init__(self, shape: torch.Size, device: torch.device | None = None):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool, device=device))

    def hard(self) -> Tensor:
        return self.mask

    def set(self, mask: Tensor) -> None:
        with torch.no_grad():
            self.mask.copy_(mask.to(self.mask.device, torch.bool))

    def _versions(self) -> tuple:
        return (self.mask._version,)

    def _compute(self, w: Tensor) -> Tensor:
        return torch.where(self.mask, w, 0.0)


class Supermask(MaskBase):
    """Mask logits ``s`` (kept off the module's parameters: the method gives them their own optimiser group)."""

    def __init__(self, shape: torch.Size, init: float = 5.0, device: torch.device | None = None):
        super().__init__()
        logits = nn.Parameter(torch.full(shape, float(init), device=device))
        # a Parameter (so DistributedDataParallel can own it, training/distributed.py) but not the model's: set
        # around nn.Module's registration
        object.__setattr__(self, "logits", logits)
        self._kept = None
        #: once hardened (``fix``), a frozen 0/1 mask replaces the Bernoulli sample and the rounding
        self.fixed: Tensor | None = None
        #: the global threshold ``τ``: keep iff ``s > τ``, sample ``Bernoulli(σ(s − τ))`` (0 in the paper's recipe)
        self.shift = 0.0
        #: the sampling sharpness ``κ``: ``Bernoulli(σ(κ(s − τ)))`` (1 in the paper's recipe)
        self.scale = 1.0
        #: deterministic top-k in training too: ``m = [s > τ]`` with the identity straight-through gradient
        self.topk = False
        #: whether a training step's forward pass counts the kept weights (``step_kept``; the paper recipe's loss)
        self.count_kept = True
        self._mask_buffer: Tensor | None = None  # top-k: the step's 0/1 mask, rewritten in place each step

    def hard(self) -> Tensor:
        return self.fixed if self.fixed is not None else self.logits.detach() > self.shift

    def fix(self, mask: Tensor) -> None:
        """Freeze the mask: from now on ``w ⊙ mask`` in training and eval alike; the logits get no gradient."""
        self.fixed = mask.detach().to(self.logits.device, torch.bool).clone()
        self.logits.requires_grad_(False)  # out of training: the optimiser and DDP leave them alone
        self._mask_buffer = None
        self.clear()

    def move_to(self, device: torch.device) -> None:
        if self.logits.device != device:
            object.__setattr__(self, "logits", nn.Parameter(self.logits.detach().to(device),
                                                            requires_grad=self.fixed is None))
            if self.fixed is not None:
                self.fixed = self.fixed.to(device)
            self.clear()

    def clear(self) -> None:
        super().clear()
        self._kept: Tensor | None = None

    def step_kept(self) -> Tensor | None:
        """``Σ round(σ(s))`` from this step's forward pass (same autograd node as the masked weight), if any."""
        return self._kept if self.in_step and self._cache is not None else None

    def _versions(self) -> tuple:
        return (self.logits._version, self.fixed is not None, self.shift, self.scale)

    def _compute(self, w: Tensor) -> Tensor:
        if self.fixed is not None:
            return torch.where(self.fixed if self.fixed.device == w.device else self.fixed.to(w.device), w, 0.0)
        logits = self.logits if self.logits.device == w.device else self.logits.to(w.device)
        if torch.is_grad_enabled():
            buffer = None
            if self.topk and self.in_step:  # one computation per step (cached): last step's graph is gone
                old = self._mask_buffer
                if old is None or (old.shape, old.dtype, old.device) != (w.shape, w.dtype, w.device):
                    self._mask_buffer = torch.empty_like(w)
                buffer = self._mask_buffer
            out, kept = _Supermask.apply(w, logits, self.training, self.shift, self.scale, self.topk,
                                         self.count_kept, buffer)
            self._kept = kept if self.count_kept else None
            return out
        if self.training and not self.topk:
            return torch.where(torch.rand_like(logits) < torch.sigmoid((logits - self.shift) * self.scale), w, 0.0)
        return torch.where(logits > self.shift, w, 0.0)


# --------------------------------------------------------------------------------------------------------------------
# attaching, finding, baking


@dataclass
class MaskSet:
    """The masks attached to one model: name → parametrization, plus the prunable names left dense (frozen)."""

    slots: dict[str, MaskBase]
    owners: dict[str, list[tuple[nn.Module, str]]]
    frozen: list[str] = field(default_factory=list)

    def hard(self) -> dict[str, Tensor]:
        return {name: slot.hard() for name, slot in self.slots.items()}

    def set(self, masks: dict[str, Tensor]) -> None:
        """Replace hard masks (names not given are left as they are)."""
        for name, mask in masks.items():
            slot = self.slots.get(name)
            if not isinstance(slot, HardMask):
                raise KeyError(f"no hard mask named {name!r}")
            slot.set(mask)

    def weights(self) -> dict[str, Tensor]:
        """The raw (unmasked) stored weights by name."""
        return {name: _raw_param(*self.owners[name][0]) for name in self.slots}

    def begin_step(self) -> None:
        """Start a training step: draw new samples; reuse each masked weight for the whole forward pass."""
        for slot in self.slots.values():
            slot.generation += 1
            slot.in_step = True
            slot.clear()

    def end_step(self) -> None:
        for slot in self.slots.values():
            slot.in_step = False
            slot.clear()


def _load_plain_weights(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                        error_msgs) -> None:
    """``load_state_dict`` pre-hook: a plain (baked) state dict loads into the masked module.

    ``<prefix><name>`` becomes the parametrization's ``original``; a hard mask absent from the state dict becomes the
    current mask ∧ (w ≠ 0), which restores a baked checkpoint's masks (resume, fine-tuning). Supermask logits are
    not in any state dict and stay as they are.
    """
    if not hasattr(module, "parametrizations"):
        return
    for pname, plist in module.parametrizations.items():
        slot = plist[0]
        plain, original = f"{prefix}{pname}", f"{prefix}parametrizations.{pname}.original"
        if not isinstance(slot, MaskBase) or plain not in state_dict or original in state_dict:
            continue
        w = state_dict.pop(plain)
        state_dict[original] = w
        key = f"{prefix}parametrizations.{pname}.0.mask"
        if isinstance(slot, HardMask) and key not in state_dict:
            state_dict[key] = slot.mask & (w != 0).to(slot.mask.device)


def attach(
    model: nn.Module,
    kind: str = "hard",
    freeze: Iterable[str] = (),
    init: float = 5.0,
    names: Iterable[str] | None = None,
) -> MaskSet:
    """Attach one mask per prunable tensor (``kind`` hard|supermask); tensors under a ``freeze`` prefix stay dense.

    ``names`` restricts masking to those prunable names. Shared modules get one mask; a tied weight gets the same mask
    object at each owner.
    """
    freeze = [p for p in freeze if p]
    wanted = set(names) if names is not None else None
    slots: dict[str, MaskBase] = {}
    owners: dict[str, list[tuple[nn.Module, str]]] = {}
    frozen: list[str] = []
    for name, where in _scan(model).items():
        if in_scope(name, freeze) or (wanted is not None and name not in wanted):
            frozen.append(name)
            continue
        module, pname = where[0]
        if parametrize.is_parametrized(module, pname):
            raise ValueError(f"{name} already has a parametrization; remove masks first")
        w = _raw_param(module, pname)
        slot: MaskBase = Supermask(w.shape, init, w.device) if kind == "supermask" else HardMask(w.shape, w.device)
        for mod, pn in where:
            parametrize.register_parametrization(mod, pn, slot, unsafe=True)
            if getattr(mod, "_sparsecap_load_hook", None) is None:
                mod._sparsecap_load_hook = mod.register_load_state_dict_pre_hook(_load_plain_weights)
        slots[name], owners[name] = slot, where
    return MaskSet(slots, owners, frozen)


def find_masks(model: nn.Module) -> dict[str, MaskBase]:
    """Masks attached to ``model`` by name (for models whose ``MaskSet`` was not kept)."""
    out: dict[str, MaskBase] = {}
    for name, where in _scan(model).items():
        module, pname = where[0]
        if parametrize.is_parametrized(module, pname):
            first = module.parametrizations[pname][0]
            if isinstance(first, MaskBase):
                out[name] = first
    return out


def baked_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The plain model's state dict with ``w ⊙ hard mask`` in place of each masked weight (no mask entries)."""
    state = model.state_dict()
    out: dict[str, Tensor] = {}
    hard: dict[tuple, Tensor] = {}
    for key, value in state.items():
        if ".parametrizations." not in f".{key}":
            out[key] = value
            continue
        prefix, _, rest = f".{key}".partition(".parametrizations.")
        prefix = prefix[1:]
        pname, _, tail = rest.partition(".")
        if tail != "original":
            continue  # the mask buffers of the parametrization
        module = model.get_submodule(prefix) if prefix else model
        slot = module.parametrizations[pname][0]
        plain = f"{prefix}.{pname}" if prefix else pname
        if not isinstance(slot, MaskBase):
            out[plain] = getattr(module, pname).detach()
            continue
        where = (value.data_ptr(), tuple(value.shape))
        if where not in hard:  # a shared module appears under several prefixes: bake once, keep it shared
            hard[where] = (value * slot.hard()).detach()
        out[plain] = hard[where]
    return out


def bake(model: nn.Module) -> dict[str, Tensor]:
    """Remove every mask, leaving ``w ⊙ m`` in the plain weights (same Parameter objects); returns the hard masks."""
    masks: dict[str, Tensor] = {}
    done: set[int] = set()
    for name, where in _scan(model).items():
        module, pname = where[0]
        if not parametrize.is_parametrized(module, pname):
            continue
        slot = module.parametrizations[pname][0]
        if not isinstance(slot, MaskBase):
            continue
        mask = slot.hard().clone()
        masks[name] = mask
        for mod, pn in where:
            if parametrize.is_parametrized(mod, pn):
                parametrize.remove_parametrizations(mod, pn, leave_parametrized=False)
            handle = getattr(mod, "_sparsecap_load_hook", None)
            if handle is not None and not parametrize.is_parametrized(mod):
                handle.remove()
                mod._sparsecap_load_hook = None
        param = getattr(module, pname)
        if id(param) not in done:
            with torch.no_grad():
                param.mul_(mask.to(param.device))
            done.add(id(param))
    return masks
