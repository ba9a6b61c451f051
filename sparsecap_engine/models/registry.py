"""Models built by name with one constructor signature; presets are plain dicts of hyper-parameters (timm style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

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


def build_model(config: dict[str, Any], vocab_size: int) -> CaptionModel:
    """Build ``config["name"]`` behind encoder ``config["encoder"]``; the config rides along for checkpoints."""
    name = config.get("name")
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    encoder = build_encoder(config.get("encoder", "grid-cnn"), **config.get("encoder_args", {}))
    params = {k: v for k, v in config.items() if k not in ("name", "encoder", "encoder_args")}
    decoder = MODELS[name](vocab_size=vocab_size, feat_dim=encoder.out_dim, **params)
    return CaptionModel(encoder, decoder, {**config, "vocab_size": vocab_size})
