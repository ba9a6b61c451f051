"""Save a model with its vocabulary and config; load it back (the model is rebuilt by name from the metadata)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sparsecap_engine.checkpoint.dense import FORMAT as DENSE_FORMAT
from sparsecap_engine.checkpoint.dense import expand_aliases, read_file, save_dense
from sparsecap_engine.errors import CheckpointError
from sparsecap_engine.models.base import CaptionModel
from sparsecap_engine.models.registry import build_shapes, build_uninitialised, model_problem
from sparsecap_engine.text.tokenizer import tokenizer_from_json
from sparsecap_engine.text.vocab import Vocab

#: other formats (e.g. the compact sparse one) register a decoder: format → (tensors, meta) → dense state dict
FORMAT_READERS: dict[str, Callable[[dict[str, torch.Tensor], dict[str, Any]], dict[str, torch.Tensor]]] = {}
#: …and may register a finiteness check on the *stored* tensors: (tensors, meta) → names of the state-dict tensors
#: that would decode to NaN or infinite values (cheaper than checking the decoded dense weights; default below)
FORMAT_FINITE_CHECKS: dict[str, Callable[[dict[str, torch.Tensor], dict[str, Any]], list[str]]] = {}


def nonfinite_stored(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> list[str]:
    """Names of the stored floating tensors that hold a NaN or an infinity (the dense format: the state itself)."""
    return [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def save_model(
    path: Path, model: CaptionModel, vocab: Vocab, state: dict[str, torch.Tensor] | None = None, **extra: Any
) -> None:
    """Dense safetensors checkpoint: weights + metadata ``model`` (config), ``vocab``, ``encoder`` and ``extra``.

    ``state`` replaces ``model.state_dict()`` (e.g. a pruned model's weights with masks baked in)."""
    meta = {"model": model.config, "vocab": vocab.to_json(), "encoder": model.config.get("encoder"), **extra}
    save_dense(path, model.state_dict() if state is None else state, meta)


def read_state(path: Path, finite: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict + metadata of any registered checkpoint format. ``finite``: a NaN or infinite weight (a diverged
    run's, or a damaged file's) is a ``CheckpointError`` rather than a model that captions ``<unk> <unk> …``."""
    tensors, meta = read_file(path)
    if finite:  # checked on the stored tensors, before decoding: a 99 % sparse file stores 1 % of the values
        bad = FORMAT_FINITE_CHECKS.get(meta["format"], nonfinite_stored)(tensors, meta)
        if bad:
            raise CheckpointError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values (e.g. {bad[0]!r}); "
                                  "a diverged or damaged checkpoint")
    return _decode_state(path, tensors, meta), meta


def _decode_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    fmt = meta["format"]
    if fmt == DENSE_FORMAT:
        return expand_aliases(tensors, meta.get("aliases", {}))
    if fmt in FORMAT_READERS:
        try:
            return FORMAT_READERS[fmt](tensors, meta)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CheckpointError(f"{path}: malformed {fmt} checkpoint ({exc.__class__.__name__}: {first})") from None
    raise CheckpointError(f"{path}: unknown checkpoint format {fmt!r}")


def model_config_of(meta: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's model config as built from it: no ``vocab_size`` (the vocabulary says it), and no encoder
    weights path (e.g. a ResNet file): the weights come from the checkpoint, not from the file used to train it."""
    config = {k: v for k, v in dict(meta["model"]).items() if k != "vocab_size"}
    config["encoder_args"] = {k: v for k, v in config.get("encoder_args", {}).items() if k != "weights"}
    return config


def load_model(path: Path, device: str | torch.device = "cpu", finite: bool = True, inference: bool = False,
               ) -> tuple[CaptionModel, Vocab, dict[str, Any]]:
    """Rebuild the model named in the checkpoint and load its weights (strict); ``finite``: see :func:`read_state`
    (``inspect`` describes a NaN checkpoint rather than refusing it). ``inference``: the model only captions, so
    the decoded tensors become its parameters as they are (no second copy of every weight; tied weights then share
    storage but are no longer one ``Parameter`` object, which only training would notice)."""
    path = Path(path)
    state, meta = read_state(path, finite)
    try:
        vocab = tokenizer_from_json(meta["vocab"], str(path))  # word Vocab or RadixTokenizer
        config = model_config_of(meta)
        # absurd sizes in the metadata allocate nothing; no size cap: the file's own tensors are compared below
        problem = model_problem(config, len(vocab), max_params=None)
        if problem:
            raise CheckpointError(f"{path}: its metadata does not describe a model: model {problem}")
        probe = build_shapes(config, len(vocab)).state_dict()  # shapes only
    except KeyError as exc:
        raise CheckpointError(f"{path}: metadata lacks {exc}") from None
    except (TypeError, ValueError, AttributeError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{path}: its metadata does not describe a model ({first})") from None
    for name, tensor in probe.items():
        if name in state and tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{path}: weight {name!r} has shape {tuple(state[name].shape)}, the model in its "
                                  f"metadata needs {tuple(tensor.shape)}")
    model = build_uninitialised(config, len(vocab))  # every parameter comes from the file (checked next)
    if inference:
        own = model.state_dict()
        state = {k: v.to(own[k].dtype) if k in own and v.dtype != own[k].dtype else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=inference)
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{path}: weights do not fit the model in its metadata ({what})")
    return model.to(device).eval(), vocab, meta


def _register_formats() -> None:
    """Import the modules that add formats to ``FORMAT_READERS`` (the compact sparse one)."""
    import sparsecap_engine.checkpoint.sparse  # noqa: F401


_register_formats()
