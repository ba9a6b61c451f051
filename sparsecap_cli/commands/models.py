"""``sparsecap models``: the model families and presets, with parameter counts (timm's ``list_models``)."""

from __future__ import annotations

import json

import typer
from rich import box
from rich.table import Table

from sparsecap_cli.render import console


def models(
    json_out: bool = typer.Option(False, "--json", help="Print the presets as JSON."),
) -> None:
    """List model families and presets: encoder, width, layers, tokenizer and parameters.

    Example: sparsecap models; then sparsecap train --preset ort-cpu
    """
    from sparsecap_engine.models.presets import COUNT_VOCAB, preset_table
    from sparsecap_engine.pretrained import BUNDLED, bundled_path

    rows = preset_table()
    bundled = [{"name": name, "path": str(bundled_path(name)), "bytes": bundled_path(name).stat().st_size, **info}
               for name, info in BUNDLED.items()]
    if json_out:  # the presets, one row each (a stable shape); the bundled checkpoints are in the human listing
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table(title="model presets (* the family's default)", box=box.SIMPLE_HEAD,
                  caption=f"parameters at a {COUNT_VOCAB:,}-word vocabulary, or the radix one")
    table.add_column("preset", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("encoder", no_wrap=True)
    table.add_column("width×L", justify="right", no_wrap=True)
    table.add_column("tokens", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    for r in rows:
        table.add_row(r["preset"] + (" *" if r["default_for"] else ""), r["family"], r["encoder"],
                      f"{r['width']}×{r['layers']}", r["tokenizer"], f"{r['params'] / 1e6:.1f} M")
    console.print(table)
    console.print("use one with: sparsecap train --preset NAME (or --model FAMILY for its default)")
    from sparsecap_engine.humanize import human_bytes

    for b in bundled:
        console.print(f"bundled checkpoint [bold]{b['name']}[/bold] ({human_bytes(b['bytes'])}): {b['about']}; test "
                      f"CIDEr-D {b['test_cider']:.3f}; used by `sparsecap caption IMAGE` without --from",
                      highlight=False)
