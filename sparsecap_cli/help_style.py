"""Click classes for the ``sparsecap`` command tree: flags take no value, so their help shows no ``<bool>`` type."""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup


class _FlagsWithoutType:
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        return params


class Command(_FlagsWithoutType, TyperCommand):
    """A command whose flags (``--quiet``, ``--help``) show no type column."""


class Group(_FlagsWithoutType, TyperGroup):
    """A command group whose flags show no type column."""
