"""The one interface every caption model offers; decoding and SCST use only this.

``memory`` and ``state`` are dicts of tensors whose first dimension is the batch, so repeating memory per caption or
per beam and reordering beams are the same generic index operation for every model.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

Memory = dict[str, Tensor]
State = dict[str, Tensor]
StepFn = Callable[[Memory, Tensor, State], tuple[Tensor, State]]


def step_function(model: nn.Module) -> StepFn:
    """What a decoding loop calls at each step: ``model.stepper()`` when the model offers it (a step bound to the
    weights for this pass), else ``model.step``. Ask once per pass, never across a weight update."""
    make = getattr(model, "stepper", None)
    return make() if callable(make) else model.step  # type: ignore[return-value]


def index_batch(tensors: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """Select rows ``index`` of every tensor along the batch dimension (dim 0)."""
    return {k: v.index_select(0, index) for k, v in tensors.items()}


def repeat_batch(tensors: dict[str, Tensor], n: int) -> dict[str, Tensor]:
    """Repeat every row ``n`` times in place order (row i → rows i*n .. i*n+n-1)."""
    if n == 1:
        return tensors
    return {k: v.repeat_interleave(n, dim=0) for k, v in tensors.items()}


class CaptionModel(nn.Module):
    """A visual encoder in front of a caption decoder.

    - ``encode(batch) -> memory``: once per image;
    - ``forward(memory, tokens) -> logprobs``: teacher forcing, ``tokens`` (B, T) start with ``<bos>``;
    - ``init_state(memory) -> state`` and ``step(memory, tokens, state) -> (logprobs, state)``: incremental decoding;
    - ``reorder_state(state, index)``: keep/duplicate rows for beam search.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, config: dict):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.config = dict(config)

    @property
    def takes_pixels(self) -> bool:
        """True when the encoder works on raw images (``caption IMAGE`` needs this)."""
        return bool(getattr(self.encoder, "takes_pixels", False))

    def encode(self, batch: dict[str, Tensor]) -> Memory:
        return self.decoder.prepare(self.encoder(batch))

    def forward(self, memory: Memory, tokens: Tensor) -> Tensor:
        return self.decoder(memory, tokens)

    def init_state(self, memory: Memory) -> State:
        return self.decoder.init_state(memory)

    def step(self, memory: Memory, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        return self.decoder.step(memory, tokens, state)

    def stepper(self) -> StepFn:
        """``step`` for one decoding pass (weights fixed until it ends): the decoder's faster bound one if it offers
        ``stepper``, else ``step``."""
        return step_function(self.decoder)

    @staticmethod
    def reorder_state(state: State, index: Tensor) -> State:
        return index_batch(state, index)

    @staticmethod
    def expand_memory(memory: Memory, n: int) -> Memory:
        return repeat_batch(memory, n)


def masked_mean(feats: Tensor, mask: Tensor) -> Tensor:
    """Mean over regions (dim 1) counting only ``mask``-ed ones: the ``fc`` feature as the mean of regions."""
    m = mask.to(feats.dtype).unsqueeze(-1)
    return (feats * m).sum(1) / m.sum(1).clamp_min(1.0)


__all__ = ["CaptionModel", "Memory", "State", "StepFn", "index_batch", "masked_mean", "repeat_batch", "step_function"]
