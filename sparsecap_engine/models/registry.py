"""Models built by name with one constructor signature; presets are plain dicts of hyper-parameters (timm style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from sparsecap_engine.errors import UsageError
from sparsecap_engine.models.base import CaptionModel
from sparsecap_engine.models.encoders import build_encoder

DECODERS: dict[str, Callable[..., nn.Module]] = {}

#: preset name → full model config (``name``, ``encoder``, ``encoder_args``, decoder hyper-parameters)
PRESETS: dict[str, dict[str, Any]] = {}


def register_decoder(name: str):
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        DECODERS[name] = factory
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
    if name not in DECODERS:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(sorted(DECODERS))}")
    encoder = build_encoder(config.get("encoder", "grid-cnn"), **config.get("encoder_args", {}))
    params = {k: v for k, v in config.items() if k not in ("name", "encoder", "encoder_args")}
    decoder = DECODERS[name](vocab_size=vocab_size, feat_dim=encoder.out_dim, **params)
    return CaptionModel(encoder, decoder, {**config, "vocab_size": vocab_size})


def _register_builtin() -> None:
    from sparsecap_engine.models.updown import UpDown

    register_decoder("updown")(UpDown)
    register_preset(
        "ud-small",
        {
            "name": "updown",
            "encoder": "grid-cnn",
            "encoder_args": {"channels": [32, 64, 96, 128]},
            "rnn_size": 256,
            "input_encoding_size": 128,
            "att_hid_size": 128,
            "drop_prob_lm": 0.2,
        },
    )
    register_preset(
        "ud-paper",
        {
            "name": "updown",
            "encoder": "regions",
            "encoder_args": {"feat_dim": 2048},
            "rnn_size": 1000,
            "input_encoding_size": 1000,
            "att_hid_size": 512,
            "drop_prob_lm": 0.5,
        },
    )
    from sparsecap_engine.models.presets import register_zoo

    register_zoo()


_register_builtin()
