"""What the recipe calls on a pruning method (or any other plug-in); every hook is optional."""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor, nn


class TrainHooks(Protocol):
    """The recipe calls, in order: ``attach(model)`` once; ``param_groups()`` for extra optimiser groups (e.g. mask
    logits, which no LR schedule touches); per step ``before_step(step)``, ``extra_loss(step)`` (added to the caption
    loss), ``after_step(step)``; at validation ``report(step)`` (a ``sparsity`` event body or None) and
    ``ready(step)`` (may this step's checkpoint become ``best``?); at the end ``finalize()`` and ``end_note()`` (extra
    ``run_end`` fields; its ``message`` is appended to the run's). ``checkpoint_masks()`` gives the masks (and a
    sparsity summary) a checkpoint is saved with: baked into the weights, and in a masks sibling file."""

    def attach(self, model: nn.Module) -> None: ...

    def param_groups(self) -> list[dict[str, Any]]: ...

    def before_step(self, step: int) -> None: ...

    def extra_loss(self, step: int) -> Tensor | None: ...

    def after_step(self, step: int) -> None: ...

    def report(self, step: int) -> dict[str, Any] | None: ...

    def ready(self, step: int) -> bool: ...

    def finalize(self) -> Any: ...

    def end_note(self) -> dict[str, Any] | None: ...

    def checkpoint_masks(self) -> tuple[dict[str, Tensor], dict[str, Any]] | None: ...


def call(hooks: object | None, name: str, *args: Any, default: Any = None) -> Any:
    """Call ``hooks.name(*args)`` when the plug-in defines it."""
    fn = getattr(hooks, name, None) if hooks is not None else None
    return fn(*args) if fn is not None else default
