"""``sparsecap doctor``."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.table import Table
from rich.text import Text

from sparsecap_cli.render import console


def doctor(
    json_out: bool = typer.Option(False, "--json", help="Print the checks as JSON instead of a table."),
) -> None:
    """Check the toolchain: Java, PTB tokenizer, METEOR, SPICE, CUDA, torch. Exits 1 if Java, PTB or METEOR fail."""
    from sparsecap_engine.metrics.doctor import REQUIRED, required_ok, run_checks

    if json_out:
        checks = run_checks()
        typer.echo(json.dumps([asdict(c) for c in checks], indent=1, ensure_ascii=False))
    else:
        with console.status("running checks (METEOR takes a few seconds)…"):
            checks = run_checks()
        table = Table(title="sparsecap doctor")
        table.add_column("", width=1)
        table.add_column("check")
        table.add_column("detail")
        for c in checks:
            mark = Text("✔", "green") if c.ok else Text("✘", "red" if c.name in REQUIRED else "yellow")
            table.add_row(mark, c.name, Text(c.detail))
        console.print(table)
    if not required_ok(checks):
        raise typer.Exit(code=1)
