"""``sparsecap export``: write a compact sparse checkpoint (bitmask or CSR per pruned tensor)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sparsecap_cli.render import console


def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file or a run directory (its pruned, else best)."),
    out: Path = typer.Option(..., "--out", help="The sparse .safetensors file to write (atomically)."),
    values: str = typer.Option("fp32", "--values", help="fp32 (exact) | fp16 (half the value bytes)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Export a (pruned) checkpoint in the compact sparse format; `caption --checkpoint` loads it directly."""
    from sparsecap_engine.checkpoint.source import checkpoint_file
    from sparsecap_engine.checkpoint.sparse import VALUE_DTYPES, export_sparse
    from sparsecap_engine.errors import UsageError

    if values not in VALUE_DTYPES:
        raise UsageError(f"--values must be fp16 or fp32, got {values!r}")
    src = checkpoint_file(checkpoint)
    meta = export_sparse(src, out, values)
    kinds: dict[str, int] = {}
    for entry in meta["storage"].values():
        if entry.get("pruned"):
            kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
    info = {"source": str(src), "out": str(out), "values": values, "source_bytes": src.stat().st_size,
            "bytes": out.stat().st_size, "sparsity": meta["sparsity"]["sparsity"], "storage": kinds}
    if as_json:
        typer.echo(json.dumps(info))
        return
    from sparsecap_engine.humanize import human_bytes, percent

    storage = ", ".join(f"{kind}: {n} tensor{'s' if n != 1 else ''}" for kind, n in sorted(kinds.items())) or "none"
    console.print(
        f"wrote {out} ({human_bytes(info['bytes'])}, from {human_bytes(info['source_bytes'])}; "
        f"pruned sparsity {percent(info['sparsity'])}; storage {storage})", highlight=False)
