"""Masks on any ``nn.Module``: which weights are prunable, attaching masks (``torch.nn.utils.parametrize``), baking.

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

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

#: names of positional tables (never pruned) — matched against the owning module's last name component
_POSITIONAL = re.compile(r"(^|_)(pe|pos|position|positional)(_|$)|pos_?emb|position", re.IGNORECASE)


def weight_names(module: nn.Module) -> list[str]:
    """The prunable weight matrices a module owns (by type): never biases, norms, convolutions or positional tables.

    A custom module opts in or out with a ``prunable_weights`` attribute (a tuple of parameter names).
    """
    custom = getattr(module, "prunable_weights", None)
    if custom is not None:
        return list(custom)
    if isinstance(module, (nn.Linear, nn.Embedding, nn.Bilinear)):
        return ["weight"]
    if isinstance(module, nn.RNNCellBase):
        return ["weight_ih", "weight_hh"]
    if isinstance(module, nn.RNNBase):
        gates = ("ih", "hh", "hr") if getattr(module, "proj_size", 0) > 0 else ("ih", "hh")
        sides = ("", "_reverse") if module.bidirectional else ("",)
        return [f"weight_{g}_l{k}{s}" for k in range(module.num_layers) for s in sides for g in gates]
    if isinstance(module, nn.MultiheadAttention):  # out_proj is an nn.Linear, found on its own
        if getattr(module, "in_proj_weight", None) is not None:
            return ["in_proj_weight"]
        return ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
    return []


def _is_mask_machinery(module: nn.Module) -> bool:
    return isinstance(module, (MaskBase, parametrize.ParametrizationList))


def _raw_param(module: nn.Module, pname: str) -> Tensor | None:
    """The stored tensor behind ``module.<pname>`` (the original when parametrized)."""
    if parametrize.is_parametrized(module, pname):
        return module.parametrizations[pname].original
    return module._parameters.get(pname) if pname in module._parameters else None


def _scan(model: nn.Module) -> dict[str, list[tuple[nn.Module, str]]]:
    """name → every (module, parameter name) that holds that tensor; a tensor reached twice is listed once."""
    by_id: dict[int, str] = {}
    out: dict[str, list[tuple[nn.Module, str]]] = {}
    for mname, module in model.named_modules():  # a module shared at several depths is yielded once
        if _is_mask_machinery(module):
            continue
        last = mname.rsplit(".", 1)[-1]
        if isinstance(module, nn.Embedding) and _POSITIONAL.search(last):
            continue
        for pname in weight_names(module):
            t = _raw_param(module, pname)
            if t is None or t.dim() < 2:
                continue
            key = id(t)
            if key in by_id:  # tied weight (e.g. embedding = output layer): one mask, several owners
                out[by_id[key]].append((module, pname))
                continue
            name = f"{mname}.{pname}" if mname else pname
            by_id[key] = name
            out[name] = [(module, pname)]
    return out


def prunable(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Prunable weights by name → (owning module, parameter name), each tensor once (shared/tied weights deduped)."""
    return {name: owners[0] for name, owners in _scan(model).items()}


def in_scope(name: str, prefixes: Iterable[str]) -> bool:
    """True when ``name`` starts with one of the (non-empty) prefixes."""
    return any(p and name.startswith(p) for p in prefixes)


# --------------------------------------------------------------------------------------------------------------------
# autograd pieces


class _Supermask(torch.autograd.Function):
    """``(w, s) → (w ⊙ m, Σ round(σ(s)))`` with ``m ~ Bernoulli(σ(s))`` (sample) or ``m = round(σ(s)) = [s > 0]``.

    Straight-through estimator for both outputs: ``∂/∂s = σ'(s) ⊙ (g_w ⊙ w + g_kept)`` — one node per tensor and step,
    so the sparsity loss's gradient and the caption loss's gradient share one σ'(s) pass.
    """

    @staticmethod
    def forward(ctx, w: Tensor, logits: Tensor, sample: bool, shift: float = 0.0,
                scale: float = 1.0, ste: bool = False) -> tuple[Tensor, Tensor]:
        ctx.ste = ste
        if ste:  # deterministic top-k: m = [s > τ], ∂/∂s = g_w ⊙ w (identity straight-through)
            m = (logits > shift).to(w.dtype)
            kept = torch.count_nonzero(m).to(logits.dtype)
            ctx.save_for_backward(w, m, m)
            ctx.set_materialize_grads(False)
            return w * m, kept
        p = torch.sigmoid((logits - shift) * scale) if shift or scale != 1.0 else torch.sigmoid(logits)
        # a float mask: w * m and g * m are cheaper than torch.where on CPU, worth the extra saved bytes
        m = torch.bernoulli(p) if sample else (logits > shift).to(p.dtype)
        kept = torch.count_nonzero(logits > shift).to(logits.dtype)
        ctx.save_for_backward(w, p, m)
        ctx.set_materialize_grads(False)
        return w * m.to(w.dtype), kept

    @staticmethod
    def backward(ctx, g_w: Tensor | None, g_kept: Tensor | None):
        w, p, m = ctx.saved_tensors
        gw = g_w * m if g_w is not None and ctx.needs_input_grad[0] else None
        gs = None
        if ctx.needs_input_grad[1] and (g_w is not None or g_kept is not None):
            if g_w is None:
                gs = torch.zeros_like(p).add_(g_kept)
            elif g_kept is None:
                gs = g_w * w
            else:
                gs = torch.addcmul(g_kept.to(w.dtype), g_w, w)
            if not ctx.ste:
                gs.mul_(torch.addcmul(p, p, p, value=-1.0))  # σ'(s) = p − p² in one pass
        return gw, gs, None, None, None, None


class _KeptCount(torch.autograd.Function):
    """``Σ round(σ(s))`` = number of logits > 0, with the straight-through gradient σ'(s)."""

    @staticmethod
    def forward(ctx, logits: Tensor) -> Tensor:
        ctx.save_for_backward(logits)
        return (logits > 0).sum().to(logits.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        (logits,) = ctx.saved_tensors
        p = torch.sigmoid(logits)
        return g * p * (1 - p)


def kept_count(logits: Tensor) -> Tensor:
    return _KeptCount.apply(logits)


# --------------------------------------------------------------------------------------------------------------------
# parametrizations


class MaskBase(nn.Module):
    """Parametrization ``w ↦ w ⊙ m`` with per-step caching (see the module docstring)."""

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
        logits = torch.full(shape, float(init), device=device, requires_grad=True)
        object.__setattr__(self, "logits", logits)  # not an nn.Parameter of the model
        self._kept = None
        #: once hardened (``fix``), a frozen 0/1 mask replaces the Bernoulli sample and the rounding
        self.fixed: Tensor | None = None
        #: the global threshold ``τ``: keep iff ``s > τ``, sample ``Bernoulli(σ(s − τ))`` (0 in the paper's recipe)
        self.shift = 0.0
        #: the sampling sharpness ``κ``: ``Bernoulli(σ(κ(s − τ)))`` (1 in the paper's recipe)
        self.scale = 1.0
        #: deterministic top-k in training too: ``m = [s > τ]`` with the identity straight-through gradient
        self.topk = False

    def hard(self) -> Tensor:
        return self.fixed if self.fixed is not None else self.logits.detach() > self.shift

    def fix(self, mask: Tensor) -> None:
        """Freeze the mask: from now on ``w ⊙ mask`` in training and eval alike; the logits get no gradient."""
        self.fixed = mask.detach().to(self.logits.device, torch.bool).clone()
        self.clear()

    def move_to(self, device: torch.device) -> None:
        if self.logits.device != device:
            object.__setattr__(self, "logits", self.logits.detach().to(device).requires_grad_(True))
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
            out, self._kept = _Supermask.apply(w, logits, self.training, self.shift, self.scale, self.topk)
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
