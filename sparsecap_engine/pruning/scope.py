"""Which weights of any ``nn.Module`` are prunable: weight matrices by module type (never biases, norms, convolutions
or positional tables), each tensor once (tied weights share one mask), named by where they live."""

from __future__ import annotations

import re
from collections.abc import Iterable

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
    """A parametrization container or a mask itself (``MaskBase.is_mask``): never a weight owner to prune."""
    return isinstance(module, parametrize.ParametrizationList) or getattr(module, "is_mask", False)


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
