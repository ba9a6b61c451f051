"""Every model family and preset, in one place (plain dicts, timm style; ``sparsecap models`` lists them). Paper
sizes from the reference §1.2 and §1.4–§1.5.

Paper presets read 2048-d bottom-up region features (``encoder = "regions"``); small CPU presets read raw pixels
through the ``grid-cnn`` encoder. A preset may name the tokenizer it was designed for (``tokenizer``,
``radix_base``): the run uses it unless ``data.tokenizer`` is set. ACORT presets expect ``data.max_len = 26``
(12 two-digit words), as in the reference's commands.
"""

from __future__ import annotations

from typing import Any

import sparsecap_engine.models.resnet  # noqa: F401 - registers the ``resnet`` encoder
from sparsecap_engine.models.ort import ORT
from sparsecap_engine.models.registry import PRESETS, build_shapes, preset, register_model, register_preset
from sparsecap_engine.models.transformer import Transformer
from sparsecap_engine.models.updown import UpDown

REGIONS = {"encoder": "regions", "encoder_args": {"feat_dim": 2048}}
GRID = {"encoder": "grid-cnn", "encoder_args": {"channels": [32, 64, 128]}}
ACORT_SHARING = {"share_att": "kv", "share_layers": [0, 0, 0, 1, 1, 1]}
RADIX_768 = {"tokenizer": "radix", "radix_base": 768}


def _base(d_model: int, d_ff: int, layers: int = 6, heads: int = 8, **extra: Any) -> dict[str, Any]:
    return {"d_model": d_model, "dim_feedforward": d_ff, "num_layers": layers, "num_heads": heads, **extra}


#: the preset a family gets when none is named
DEFAULT_PRESET: dict[str, str] = {"updown": "ud-small", "transformer": "transformer-small", "ort": "ort-cpu"}

BUILTIN_PRESETS: dict[str, dict[str, Any]] = {
    # paper configurations (V = 10001 words unless radix)
    "ud-paper": {"name": "updown", **REGIONS, "rnn_size": 1000, "input_encoding_size": 1000, "att_hid_size": 512,
                 "drop_prob_lm": 0.5},
    "transformer-paper": {"name": "transformer", **REGIONS, **_base(512, 2048)},
    "ort-paper": {"name": "ort", **REGIONS, **_base(512, 2048)},
    "ort-small": {"name": "ort", **REGIONS, **_base(256, 1024)},
    "ort-xsmall": {"name": "ort", **REGIONS, **_base(104, 416)},
    "acort-base": {"name": "ort", **REGIONS, **_base(512, 2048), **ACORT_SHARING, **RADIX_768},
    "acort-base-al": {"name": "ort", **REGIONS, **_base(512, 2048), "share_att": "kv",
                      "share_layers": [0] * 6, **RADIX_768},
    "acort-small": {"name": "ort", **REGIONS, **_base(256, 1024), **ACORT_SHARING, **RADIX_768},
    # small CPU presets over raw pixels (the embedded synthetic dataset; its region features with --features auto)
    "ud-small": {"name": "updown", "encoder": "grid-cnn", "encoder_args": {"channels": [32, 64, 96, 128]},
                 "rnn_size": 256, "input_encoding_size": 128, "att_hid_size": 128, "drop_prob_lm": 0.2},
    "transformer-small": {"name": "transformer", **GRID, **_base(128, 512, layers=3, heads=4, drop_prob_src=0.1)},
    "ort-cpu": {"name": "ort", **GRID, **_base(128, 512, layers=3, heads=4, drop_prob_src=0.1)},
    "acort-cpu": {"name": "ort", **GRID, **_base(128, 512, layers=4, heads=4, drop_prob_src=0.1),
                  "share_att": "kv", "share_layers": [0, 0, 1, 1], "tokenizer": "radix", "radix_base": 16},
}


def register_zoo() -> None:
    register_model("updown")(UpDown)
    register_model("transformer")(Transformer)
    register_model("ort")(ORT)
    for name, config in BUILTIN_PRESETS.items():
        register_preset(name, config)


register_zoo()


#: the vocabulary a word-level preset is counted with in ``preset_table`` (the paper's COCO vocabulary)
COUNT_VOCAB = 10001


def preset_table() -> list[dict[str, Any]]:
    """One row per registered preset (``sparsecap models``): family, encoder, width, layers, parameter count
    (built on the meta device: nothing allocated) at the vocabulary it is meant for, and which family it is the
    default of."""


    defaults = {p: family for family, p in DEFAULT_PRESET.items()}
    rows = []
    for name in PRESETS:
        config = preset(name)
        vocab = config["radix_base"] + 3 if config.get("tokenizer") == "radix" else COUNT_VOCAB
        build = {k: v for k, v in config.items() if k not in ("tokenizer", "radix_base")}
        params = sum(p.numel() for p in build_shapes(build, vocab).parameters())
        rows.append({
            "preset": name, "family": config["name"], "encoder": config.get("encoder", "grid-cnn"),
            "width": config.get("d_model", config.get("rnn_size")), "layers": config.get("num_layers", 2),
            "tokenizer": f"radix {config['radix_base']}" if config.get("tokenizer") == "radix" else "word",
            "vocab": vocab, "params": params, "default_for": defaults.get(name, ""),
        })
    return rows
