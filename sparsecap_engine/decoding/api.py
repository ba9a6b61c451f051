"""One entry point that turns a batch of encoder inputs into caption strings with the chosen decoding options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sparsecap_engine.decoding.greedy import greedy, sample
from sparsecap_engine.errors import UsageError
from sparsecap_engine.models.base import CaptionModel, Memory
from sparsecap_engine.text.vocab import Vocab


@dataclass
class DecodeOptions:
    """``method``: greedy | sample | beam (beam needs ``beam_size`` > 1)."""

    method: str = "greedy"
    beam_size: int = 1
    max_len: int = 20
    temperature: float = 1.0
    seed: int = 0


#: extra decoders by method name: (model, memory, vocab, options) → (B, T) ids
DECODERS: dict[str, Callable[[CaptionModel, Memory, Vocab, DecodeOptions], Tensor]] = {}


def decode_memory(model: CaptionModel, memory: Memory, vocab: Vocab, opts: DecodeOptions) -> Tensor:
    ids = dict(bos=vocab.bos_id, eos=vocab.eos_id, pad=vocab.pad_id, max_len=opts.max_len)
    method = "greedy" if opts.method == "beam" and opts.beam_size <= 1 else opts.method
    if method == "greedy":
        return greedy(model, memory, **ids)
    if method == "sample":
        gen = torch.Generator(device=next(iter(memory.values())).device).manual_seed(opts.seed)
        with torch.no_grad():
            return sample(model, memory, temperature=opts.temperature, generator=gen, **ids)[0]
    if method in DECODERS:
        return DECODERS[method](model, memory, vocab, opts)
    raise UsageError(f"unknown decoding method {opts.method!r}; choose from greedy, sample, {', '.join(DECODERS)}")


@torch.no_grad()
def caption_batch(model: CaptionModel, batch: dict[str, Tensor], vocab: Vocab, opts: DecodeOptions) -> list[str]:
    """Encode once, decode, and turn ids into words."""
    memory = model.encode(batch)
    seqs = decode_memory(model, memory, vocab, opts)
    return [vocab.decode(row.tolist()) for row in seqs]
