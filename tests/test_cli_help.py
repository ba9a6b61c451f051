"""Every command's ``--help`` shows every option's help text whole: rich markup must not eat ``[sweep]`` or
``[default: …]`` (brackets in help strings are escaped)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sparsecap_cli.main import app

COMMAND: Any = typer.main.get_command(app)


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    if hasattr(group, "commands"):  # a group
        for name, sub in group.commands.items():
            if not sub.hidden:
                out += _commands(sub, (*path, name))
    return out


def _squash(text: str) -> str:
    return re.sub(r"[\s│]+", " ", text)


@pytest.mark.parametrize("path", _commands(COMMAND), ids=lambda p: " ".join(p) or "sparsecap")
def test_help_shows_every_option_text(path: tuple[str, ...]):
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    shown = _squash(res.output)
    command = COMMAND
    for name in path:
        command = command.commands[name]
    for param in command.params:
        text = getattr(param, "help", None)
        if text and not getattr(param, "hidden", False):  # hidden: an old spelling kept working
            want = _squash(text.replace("\\[", "["))
            assert want in shown, f"{' '.join(path)} {param.name}: {want!r} not in --help"
    # a flag takes no value: no ``<bool>`` type column (Typer's default shows one), but valued options keep theirs
    assert "<bool>" not in res.output, f"{' '.join(path)}: a flag shows <bool>"
    if any(getattr(p, "is_flag", None) is False and not getattr(p, "hidden", False) for p in command.params
           if getattr(p, "param_type_name", "") == "option"):
        assert re.search(r"<(int|float|str|path)>", res.output), f"{' '.join(path)}: valued options lost their type"


@pytest.mark.parametrize("path", [p for p in _commands(COMMAND) if p and p != ("data",)], ids=" ".join)
def test_every_command_help_ends_with_examples_that_parse(path: tuple[str, ...]):
    """An example in every command's help, and each one is a valid command line (its options exist and parse)."""
    import shlex

    from sparsecap_cli.help_style import EXAMPLES

    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    shown = [line.strip().removeprefix("$ ") for line in res.output.splitlines() if line.strip().startswith("$ ")]
    assert "Examples" in res.output and shown == EXAMPLES[path[-1]], res.output
    command = COMMAND
    for name in path:
        command = command.commands[name]
    for example in shown:
        argv = shlex.split(example)
        assert argv[: len(path) + 1] == ["sparsecap", *path], example
        command.make_context(" ".join(argv[: len(path) + 1]), argv[len(path) + 1 :])  # raises on a bad option
