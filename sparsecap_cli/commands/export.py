"""``sparsecap export``: write a compact sparse checkpoint (bitmask, CSR or Rice-coded gaps per pruned tensor; fp32,
fp16 or int8 values); ``--check`` scores the test split with the source and with the exported weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from sparsecap_cli.render import console, next_steps, progress_bar, q

#: the exact format a lossy export is compared with, and the lossy ones
EXACT, LOSSY = "fp16", ("int8",)


def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file or a run directory (its pruned, else best)."),
    out: Path = typer.Option(..., "--out", "-o", help="The sparse .safetensors file to write (atomically)."),
    values: str = typer.Option("fp32", "--values", help="fp32 (exact) | fp16 (half the value bytes) | int8 (lossy: "
                               "per-row scales, a quarter of fp32's value bytes)."),
    check: bool = typer.Option(False, "--check", help="After writing, caption the run's test split (greedy) with "
                               "the source and with the exported weights and print the CIDEr-D change and the size "
                               "change (needs a run directory, or a checkpoint inside one)."),
    limit: int = typer.Option(0, "--limit", help="--check: only the first N test images (0 = all)."),
    device: str = typer.Option("auto", "--device", help="--check: auto | cpu | cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="--check: no progress bar."),
) -> None:
    """Export a (pruned) checkpoint in the compact sparse format; `caption --from FILE` loads it directly."""
    from sparsecap_engine.checkpoint.source import checkpoint_file
    from sparsecap_engine.checkpoint.sparse import check_values, export_sparse, packed_size
    from sparsecap_engine.recipes.export_check import check_export, check_run

    check_values(values)
    src = checkpoint_file(checkpoint)
    run = check_run(checkpoint, src, limit, device) if check else None  # refused before anything is written
    meta = export_sparse(src, out, values)
    kinds: dict[str, int] = {}
    for entry in meta["storage"].values():
        if entry.get("pruned"):
            kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
    info: dict[str, Any] = {
        "source": str(src), "out": str(out), "values": values, "source_bytes": src.stat().st_size,
        "bytes": out.stat().st_size, "sparsity": meta["sparsity"]["sparsity"], "storage": kinds,
        "zeroed": sum(e.get("zeroed", 0) for e in meta["storage"].values()),
    }
    if run is not None:
        with progress_bar(quiet or as_json) as progress:
            info["check"] = check_export(run, src, out, limit, device, progress)
        if values in LOSSY:
            info["check"]["exact_values"] = EXACT
            info["check"]["exact_bytes"] = packed_size(src, EXACT)
    if as_json:
        typer.echo(json.dumps(info))
        return
    from sparsecap_engine.humanize import human_bytes, percent

    storage = ", ".join(f"{kind}: {n} tensor{'s' if n != 1 else ''}" for kind, n in sorted(kinds.items())) or "none"
    console.print(
        f"wrote {out} ({human_bytes(info['bytes'])}, from {human_bytes(info['source_bytes'])}; "
        f"pruned sparsity {percent(info['sparsity'])}; storage {storage})", highlight=False)
    if info["zeroed"]:
        console.print(f"{info['zeroed']:,} pruned weights rounded to 0 in {values} (dropped)", highlight=False)
    if "check" in info:
        console.print(check_lines(info), highlight=False)
    next_steps(f"sparsecap caption IMAGE --from {q(out)}", f"sparsecap inspect {q(out)}")


def check_lines(info: dict[str, Any]) -> str:
    """The human ``--check`` report: the score change, then the size change."""
    from sparsecap_engine.humanize import human_bytes, number, percent

    c = info["check"]
    cut = f"first {c['images']} of {c['split_images']}" if c["images"] < c["split_images"] else f"all {c['images']}"
    change = "–" if c["change"] is None else f"{'+' if c['change'] >= 0 else '−'}{number(abs(c['change']))}"
    lines = [f"check on the test split ({cut} images, greedy): CIDEr-D {number(c['source'])} (source) → "
             f"{number(c['export'])} ({info['values']}), change {change}; {c['captions_changed']} of {c['images']} "
             "captions differ"]
    size = f"size {human_bytes(info['bytes'])} ({info['values']})"
    if "exact_bytes" in c:
        saved = 1 - info["bytes"] / c["exact_bytes"] if c["exact_bytes"] else 0.0
        size += (f" vs {human_bytes(c['exact_bytes'])} with exact {c['exact_values']} values ({percent(saved)} "
                 "smaller)")
    size += f"; source {human_bytes(info['source_bytes'])} ({percent(info['bytes'] / info['source_bytes'])} of it)"
    lines.append(size)
    return "\n".join(lines)
