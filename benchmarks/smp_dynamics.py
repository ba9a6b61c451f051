"""Mask-logit dynamics of supermask pruning (SMP), ``paper`` vs ``robust`` recipe, on the toy protocol and a real run.

    python benchmarks/smp_dynamics.py --out smp-study [--steps 400] [--sparsity 0.975] [--skip-real]

Prints, per recipe: the step where the first logit crosses zero, sparsity at 10/25/50/75/100 % of the run, the final
sparsity vs the target; writes ``<out>/smp_dynamics.png`` (sparsity vs step with the schedule, logit histograms over
time) and ``<out>/smp_dynamics.json``. The real run trains the embedded dataset's default model with SMP via the
training recipe (``--set``-style overrides below), validation every quarter.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from smp_toy import run_toy  # noqa: E402

from sparsecap_engine.pruning.methods import SupermaskMethod  # noqa: E402

PAPER_TOY = {"recipe": "paper", "mask_lr": 10.0, "sparsity_weight": 120.0}  # the reference's toy settings


class Traced(SupermaskMethod):
    """SMP that also records sparsity every step and logit histograms at 10 points of the run."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.trace: list[float] = []
        self.hists: dict[int, list[float]] = {}

    def after_step(self, step: int) -> None:
        super().after_step(step)
        self.trace.append(self.sparsity())  # robust: after the threshold moved to the next step's schedule
        if (step + 1) % max(1, self.total_steps // 10) == 0:
            flat = torch.cat([t.detach().reshape(-1) for t in self.logits()]).float()
            self.hists[step + 1] = torch.histc(flat.clamp(-10, 10), bins=80, min=-10, max=10).tolist()


def summary(trace: list[float], target: float) -> dict:
    n = len(trace)
    first = next((i + 1 for i, v in enumerate(trace) if v > 0), None)
    return {"first_crossing": first, "at": {f: round(trace[max(0, int(f * n) - 1)], 4) for f in (0.1, 0.25, 0.5,
            0.75, 1.0)}, "final": trace[-1], "target": target}


def real_run(recipe: str, steps: int, sparsity: float, out: Path) -> dict:
    from sparsecap_engine.config import RunConfig
    from sparsecap_engine.recipes.train import train
    from sparsecap_engine.runs import RunDir

    cfg = RunConfig()
    cfg.train.steps, cfg.train.batch_size, cfg.train.val_every, cfg.train.val_images = steps, 16, steps // 4, 100
    cfg.train.log_every = 50
    method = Traced(sparsity, recipe=recipe, total_steps=steps)
    run = RunDir.create(out / f"real-{recipe}", overwrite=True)
    t0 = time.perf_counter()
    res = train(cfg, run, hooks=method)
    return {"recipe": recipe, **summary(method.trace, sparsity), "val_cider": res.last_metrics.get("CIDEr-D"),
            "wall_s": round(time.perf_counter() - t0, 1), "trace": method.trace, "hists": method.hists,
            "scheduled": [h[2] for h in method.history]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("smp-study"))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--sparsity", type=float, default=0.975)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-toy", action="store_true")
    ap.add_argument("--recipes", default="paper,robust", help="comma list of recipes for the real run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"toy": [], "real": []}
    for steps in () if args.skip_toy else (40, 200, 1000):
        for name, opts in (("paper", PAPER_TOY), ("robust", {})):
            r = run_toy(steps, **opts)
            row = {"recipe": name, "steps": steps, **summary(r["trace"], 0.8), "logit_mean": r["logit_mean"][-1]}
            results["toy"].append(row)
            print(f"toy {name:6s} {steps:5d} steps: first crossing {row['first_crossing']}, "
                  f"sparsity {row['at']}, final {row['final']:.3f} (target 0.8), logit mean {row['logit_mean']:.1f}")
    if not args.skip_real:
        for recipe in args.recipes.split(","):
            r = real_run(recipe, args.steps, args.sparsity, args.out)
            results["real"].append(r)
            print(f"real {recipe:6s} {args.steps} steps: first crossing {r['first_crossing']}, sparsity {r['at']}, "
                  f"final {r['final']:.4f} (target {args.sparsity}), val CIDEr-D {r['val_cider']:.3f}, "
                  f"{r['wall_s']} s")
    (args.out / "smp_dynamics.json").write_text(json.dumps(results))
    plot(results, args.out / "smp_dynamics.png", args.sparsity)
    print(f"wrote {args.out / 'smp_dynamics.png'}")


def plot(results: dict, path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = results["real"]
    fig, axes = plt.subplots(1, 1 + len(real), figsize=(5 + 5 * len(real), 4), squeeze=False)
    ax = axes[0][0]
    for r in real:
        ax.plot(range(1, len(r["trace"]) + 1), r["trace"], label=f"{r['recipe']} (final {r['final']:.3f})")
        if r.get("scheduled"):
            ax.plot(range(1, len(r["scheduled"]) + 1), r["scheduled"], ls=":", lw=1, color="grey",
                    label="robust schedule s*(t)")
    ax.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target}")
    ax.set_xlabel("step")
    ax.set_ylabel("sparsity (hard masks)")
    ax.set_title("SMP sparsity vs step")
    ax.legend(fontsize=8)
    for ax, r in zip(axes[0][1:], real, strict=True):
        edges = torch.linspace(-10, 10, 81)
        centres = ((edges[1:] + edges[:-1]) / 2).tolist()
        for k, (step, hist) in enumerate(sorted(r["hists"].items(), key=lambda kv: int(kv[0]))):
            ax.plot(centres, hist, color=plt.cm.viridis(k / 10), lw=1, label=f"step {step}" if k % 3 == 0 else None)
        ax.set_yscale("log")
        ax.axvline(0, color="k", lw=0.6)
        ax.set_xlabel("mask logit (clamped to ±10)")
        ax.set_title(f"{r['recipe']}: logit histograms")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
