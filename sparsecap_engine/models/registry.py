"""Models built by name with one constructor signature; presets are plain dicts of hyper-parameters (timm style)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from sparsecap_engine.errors import UsageError
from sparsecap_engine.models.base import CaptionModel
from sparsecap_engine.models.encoders import build_encoder

#: model family name (``updown``, ``transformer``, ``ort``) → its decoder factory
MODELS: dict[str, Callable[..., nn.Module]] = {}

#: preset name → full model config (``name``, ``encoder``, ``encoder_args``, decoder hyper-parameters)
PRESETS: dict[str, dict[str, Any]] = {}


def register_model(name: str):
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = factory
        return factory

    return wrap


def register_preset(name: str, config: dict[str, Any]) -> None:
    PRESETS[name] = config


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose from {', '.join(sorted(PRESETS))}")
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in PRESETS[name].items()}


class _ShapesOnly(TorchFunctionMode):
    """Inside a meta-device build, in-place initialisers (``normal_``, ``uniform_``, …) have no data to fill: they are
    skipped, and with them torch's one-time import of its Python reference ops (about 1 s, which would otherwise be
    most of ``sparsecap caption``'s start-up)."""

    #: in-place ops that only fill values (never a shape, dtype or flag): what ``nn.init`` and ``reset_parameters`` use
    FILLS = frozenset({
        "normal_", "uniform_", "zero_", "zeros_", "ones_", "fill_", "constant_", "copy_", "eye_", "dirac_",
        "orthogonal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
        "sparse_", "bernoulli_", "exponential_", "log_normal_", "random_", "mul_", "div_", "add_", "sub_", "clamp_",
        "__setitem__",
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self.FILLS:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))  # nn.init passes tensor=…
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


class _NoParamInit(TorchFunctionMode):
    """Parameters' random and constant initialisers skipped (left as ``torch.empty`` made them): for a model whose
    every parameter a checkpoint is about to set. Buffers (a positional table) are computed as usual."""

    INITS = frozenset({
        "normal_", "uniform_", "zero_", "zeros_", "ones_", "fill_", "constant_", "orthogonal_", "trunc_normal_",
        "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self.INITS:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, nn.Parameter):
                return target
        return func(*args, **kwargs)


def build_uninitialised(config: dict[str, Any], vocab_size: int) -> CaptionModel:
    """:func:`build_model` without initialising the parameters (a paper-size model's random init is most of the time
    to load it): only for loading a state dict that holds every parameter (``checkpoint/model_io.py`` checks)."""
    with _NoParamInit():
        return build_model(config, vocab_size)


def build_shapes(config: dict[str, Any], vocab_size: int) -> CaptionModel:
    """:func:`build_model` on the meta device, parameters uninitialised: shapes and counts only, nothing allocated."""
    with torch.device("meta"), _ShapesOnly():
        return build_model(config, vocab_size)


#: a model past this many parameters is refused before it is built (2 G parameters: 8 GB of fp32 weights)
MAX_PARAMS = 2_000_000_000


#: settings every model config may hold besides its class's own (the family, the encoder, the tokenizer)
COMMON_SETTINGS = ("name", "preset", "encoder", "encoder_args", "tokenizer", "radix_base", "vocab_size")


def settings_of(cls: type) -> set[str]:
    """The keyword settings a model or encoder class takes: its ``__init__``'s named parameters, and its project base
    classes' when it passes ``**kwargs`` on (``ORT`` → ``Transformer``)."""
    keys: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or not klass.__module__.startswith("sparsecap_engine"):
            continue
        params = inspect.signature(init).parameters.values()
        keys |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
        passes_on = any(p.kind is p.VAR_KEYWORD and p.name != "_" for p in params)
        if not passes_on:
            break
    return keys


def _unknown_settings(config: dict[str, Any]) -> str | None:
    """A setting the model or its encoder would silently ignore (a typo, another family's), with the nearest valid."""
    import difflib

    from sparsecap_engine.models.encoders import ENCODERS

    cls = MODELS.get(config.get("name"))
    if cls is None:
        return None  # build_model names the unknown family
    valid = (settings_of(cls) - {"feat_dim"}) | set(COMMON_SETTINGS)  # feat_dim: the encoder's output
    for key in config:
        if key not in valid:
            near = difflib.get_close_matches(key, sorted(valid), n=1)
            own = ", ".join(sorted(valid - set(COMMON_SETTINGS)))
            hint = f" (did you mean {near[0]!r}?)" if near else f"; {config.get('name')} takes {own}"
            return f"setting {key!r} is not one of {config.get('name')}'s{hint}"
    encoder = ENCODERS.get(config.get("encoder", "grid-cnn"))
    args = config.get("encoder_args", {})
    if encoder is not None and isinstance(args, dict):
        valid_args = settings_of(encoder)
        for key in args:
            if key not in valid_args:
                near = difflib.get_close_matches(key, sorted(valid_args), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else f"; it takes {', '.join(sorted(valid_args))}"
                return f"encoder_args {key!r} is not a setting of encoder {config.get('encoder', 'grid-cnn')!r}{hint}"
    return None


def model_problem(config: dict[str, Any], vocab_size: int = 16, max_params: int | None = MAX_PARAMS) -> str | None:
    """Why ``config`` does not describe a model that can be built (a size of the wrong type or range, a channel list
    that is empty or not positive, an option torch refuses, more than ``max_params`` parameters), or None. The model
    is built on the meta device: nothing is allocated, however absurd the sizes."""
    import warnings


    unknown = _unknown_settings(config)
    if unknown:
        return unknown
    for key, value in config.items():  # a zero width builds (with a torch warning) and fails only when loaded
        sizes = ("_size", "d_model", "dim_feedforward", "d_ff", "num_layers", "num_heads")
        if isinstance(value, int) and not isinstance(value, bool) and key.endswith(sizes) and value < 1:
            return f"{key} must be at least 1, got {value}"
    args = config.get("encoder_args", {})
    if not isinstance(args, dict):
        return f"encoder_args must be a table, got {args!r}"
    channels = args.get("channels")
    if channels is not None and (not isinstance(channels, list | tuple) or not channels or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels)):
        return f"encoder_args.channels must be a non-empty list of positive integers, got {channels!r}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's zero-element warning: the error below says it
            model = build_shapes(config, vocab_size)
    except UsageError as exc:
        return str(exc)
    except (TypeError, ValueError, RuntimeError, OverflowError, AttributeError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"does not build ({exc.__class__.__name__}: {first})"
    n = sum(p.numel() for p in model.parameters())
    if max_params is not None and n > max_params:
        return f"would have {n:,} parameters (at most {max_params:,})"
    return None


def build_model(config: dict[str, Any], vocab_size: int) -> CaptionModel:
    """Build ``config["name"]`` behind encoder ``config["encoder"]``; the config rides along for checkpoints."""
    name = config.get("name")
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    encoder = build_encoder(config.get("encoder", "grid-cnn"), **config.get("encoder_args", {}))
    params = {k: v for k, v in config.items() if k not in ("name", "encoder", "encoder_args")}
    decoder = MODELS[name](vocab_size=vocab_size, feat_dim=encoder.out_dim, **params)
    return CaptionModel(encoder, decoder, {**config, "vocab_size": vocab_size})
