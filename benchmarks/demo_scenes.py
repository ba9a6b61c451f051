"""How many fresh scenes the README's demo captions right: every object's colour and shape, nothing invented.

    OMP_NUM_THREADS=1 python benchmarks/demo_scenes.py --run runs/demo [--n 20] [--seed 12345] [--size 256]
                                                       [--out DIR] [--json]

Renders ``--n`` fresh scenes exactly as ``sparsecap data scene --seed S`` does, for seeds S = ``--seed``,
``--seed`` + 1, ... (the default start, 12345, is the command's own default, i.e. the README's scene; integer seeds
never reproduce dataset images, which are seeded by strings), captions them with the run's best checkpoint as
``sparsecap caption --run`` does (greedy, CPU, max 20 tokens) and judges each caption with
:func:`sparsecap_engine.data.scene_check.judge_caption`: an object is right when the caption names its colour with its
shape (any synonym; "two red circles" covers two), a scene is right when every object is right and no colour+shape,
shape or colour is named that the scene lacks. Also counted: captions that name nothing false (a weaker,
precision-only bar). ``--out DIR`` keeps the PNGs (``scene-<seed>.png``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from sparsecap_engine.data.scene_check import fresh_scene, judge_caption
from sparsecap_engine.decoding.api import DecodeOptions
from sparsecap_engine.errors import SparsecapError
from sparsecap_engine.inference import Captioner
from sparsecap_engine.runs import RunDir

DEFAULT_SEED = 12345  # `sparsecap data scene`'s default seed: scene 1 is the README's scene
DEFAULT_SIZE = 256  # `sparsecap data scene`'s default size


def describe_objects(objects: list[dict[str, Any]]) -> str:
    """'small blue circle, large purple triangle' from the JSON object rows."""
    return ", ".join(f"{o['size']} {o['color']} {o['shape']}" for o in objects)


def evaluate(run: Path, n: int, seed: int, size: int, out: Path | None) -> dict[str, Any]:
    """Render, caption and judge ``n`` fresh scenes; a JSON-ready summary with one row per scene."""
    captioner = Captioner.load(run, None, "cpu", "auto")  # what `sparsecap caption --run RUN` loads
    opts = DecodeOptions(method="greedy", max_len=20).check()  # `sparsecap caption`'s defaults
    seeds = [seed + i for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="demo-scenes-") as tmp:
        folder = Path(out) if out is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        scenes, paths = [], []
        for s in seeds:
            scene, image = fresh_scene(s, size)
            path = folder / f"scene-{s}.png"
            image.save(path)
            scenes.append(scene)
            paths.append(path)
        captions = captioner.caption(paths, opts)
    rows = []
    for s, scene, path, caption in zip(seeds, scenes, paths, captions, strict=True):
        verdict = judge_caption(scene.objects, caption)
        rows.append(
            {
                "seed": s,
                "image": str(path) if out is not None else None,
                "objects": [
                    {"color": o.color, "shape": o.shape, "size": o.size, "box": list(o.box), "right": r}
                    for o, r in zip(scene.objects, verdict.objects_right, strict=True)
                ],
                "caption": caption,
                "right": verdict.right,
                "objects_right": verdict.n_right,
                "false_mentions": verdict.false_mentions,
            }
        )
    return {
        "run": str(run),
        "checkpoint": str(RunDir.open(run).checkpoint("best")),
        "step": captioner.meta.get("step"),
        "decoding": "greedy, max 20 tokens, cpu",
        "size": size,
        "scenes": rows,
        "n": n,
        "scenes_right": sum(r["right"] for r in rows),
        "objects_total": sum(len(r["objects"]) for r in rows),
        "objects_right": sum(r["objects_right"] for r in rows),
        "scenes_truthful": sum(not r["false_mentions"] for r in rows),
    }


def print_table(result: dict[str, Any]) -> None:
    """Plain-text table (seed, objects, caption, right?) and the totals."""
    rows = [
        (
            str(r["seed"]),
            describe_objects(r["objects"]),
            r["caption"] + (f"  [false: {'; '.join(r['false_mentions'])}]" if r["false_mentions"] else ""),
            ("yes" if r["right"] else "no") + f" {r['objects_right']}/{len(r['objects'])}",
        )
        for r in result["scenes"]
    ]
    head = ("seed", "objects", "caption", "right?")
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    for row in (head, tuple("-" * w for w in widths), *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(
        f"\n{result['scenes_right']} of {result['n']} scenes right; "
        f"object-level {result['objects_right']} of {result['objects_total']}; "
        f"{result['scenes_truthful']} of {result['n']} captions name nothing false\n"
        f"({result['checkpoint']}, step {result['step']}; {result['decoding']})"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run, print a table or JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="run directory (its best checkpoint is used)")
    ap.add_argument("--n", type=int, default=20, help="number of fresh scenes")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the first scene; then seed+1, ...")
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE, help="scene size in pixels (as `data scene --size`)")
    ap.add_argument("--out", type=Path, default=None, help="also save the PNGs into this folder")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be at least 1")
    try:
        result = evaluate(args.run, args.n, args.seed, args.size, args.out)
    except SparsecapError as exc:  # a wrong --run, an unreadable checkpoint, ...: one line, like the CLI
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
