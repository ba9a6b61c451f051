"""How ``sparsecap --help`` looks: click classes whose flags show no ``<bool>`` type (they take no value), and the
examples at the end of each command's help."""

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


#: an example or two at the end of each command's --help (typed as shown, on the embedded data)
EXAMPLES = {
    "train": ["sparsecap train --features auto --steps 1200 --name dense",
              "sparsecap train --scst --from runs/dense --name dense-scst"],
    "prune": ["sparsecap prune --method supermask --sparsity 0.95 --features auto --steps 1200 --name smp95",
              "sparsecap prune --method magnitude --sparsity 0.9 --from runs/dense --steps 200"],
    "eval": ["sparsecap eval runs/smp95 --baseline", "sparsecap eval runs/smp95 --beam 3 --split val --limit 100"],
    "caption": ["sparsecap caption scene.png", "sparsecap caption a.png b.png --from runs/smp95 --beam 3 --n-best 3"],
    "sweep": ["sparsecap sweep --jobs 2", "sparsecap sweep --methods dense,supermask --sparsity 0.95,0.99 --dry-run"],
    "inspect": ["sparsecap inspect runs/smp95", "sparsecap inspect small.safetensors --params --bench"],
    "export": ["sparsecap export runs/smp95 -o small.safetensors --values int8 --check"],
    "monitor": ["sparsecap monitor runs/smp95", "sparsecap monitor runs", "sparsecap monitor sweeps/paper --once"],
    "models": ["sparsecap models", "sparsecap models --json"],
    "doctor": ["sparsecap doctor"],
    "synth": ["sparsecap data synth -o data/scenes --images 2000"],
    "scene": ["sparsecap data scene -o scene.png --seed 7"],
    "pack-features": ["sparsecap data pack-features data/coco/bu_att --boxes data/coco/bu_box "
                      "-o data/coco/features.h5"],
    "extract-features": ["sparsecap data extract-features --dataset data/flickr8k/dataset.json --weights "
                         "resnet101.safetensors -o data/flickr8k/features.h5"],
}


def examples(name: str) -> str:
    """The ``--help`` epilog of command ``name``: its examples, one per line."""
    return "[b]Examples[/b]\n\n" + "\n\n".join(f"  [dim]$[/dim] {line}" for line in EXAMPLES[name])
