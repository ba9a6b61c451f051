"""Pruning benchmarks on a paper-size model (Up-Down, V = 10001: ~53 M parameters; or ORT: ~55 M).

1. Time to compute a global (class-blind) magnitude mask at 95 % sparsity over every prunable weight:
   ours (``pruning.criteria.select``) vs ``torch.nn.utils.prune.global_unstructured`` (L1), side by side.
   Target: ours no slower.
2. Training step time (forward, backward, Adam) of supermask pruning vs dense training on the same model.
   Target: ≤ 1.3×.

Run: ``python benchmarks/bench_pruning.py [--model ud-paper|ort-paper] [--threads N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.nn.utils import prune as torch_prune

from sparsecap_engine.models.registry import build_model, preset
from sparsecap_engine.pruning.criteria import select
from sparsecap_engine.pruning.methods import SupermaskMethod
from sparsecap_engine.pruning.scope import prunable
from sparsecap_engine.training.losses import caption_xe

#: supermask's schedule: a run this long, timed from its step FIRST_STEP (mid-ramp: pruning from 0.2 T to 0.6 T)
RUN_STEPS, FIRST_STEP = 1000, 400


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def model_for(name: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = preset(name)
    return build_model(cfg, 10001)


def bench_mask(name: str, repeats: int) -> dict[str, float]:
    model = model_for(name)
    targets = prunable(model)
    weights = {n: getattr(m, p).detach() for n, (m, p) in targets.items()}

    def ours() -> None:
        select("blind", weights, 0.95)

    def theirs() -> None:
        params = list(targets.values())
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=0.95)
        for module, pname in params:  # undo, so every repeat starts from the same plain model (not timed below)
            torch_prune.remove(module, pname)

    def theirs_compute_only() -> float:
        params = list(targets.values())
        t0 = time.perf_counter()
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=0.95)
        dt = time.perf_counter() - t0
        for module, pname in params:
            torch_prune.remove(module, pname)
        return dt

    ours(), theirs_compute_only()  # warm-up (allocator, threads)
    t_ours = timed(ours, repeats)
    t_torch = [theirs_compute_only() for _ in range(repeats)]
    # same number of weights kept
    sel = select("blind", {n: getattr(m, p).detach() for n, (m, p) in targets.items()}, 0.95)
    kept = sum(int(m.sum()) for m in sel.masks.values())
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "prunable": sum(w.numel() for w in weights.values()),
        "kept": kept,
        "ours_s": statistics.median(t_ours),
        "torch_s": statistics.median(t_torch),
        "ratio_ours_over_torch": statistics.median(t_ours) / statistics.median(t_torch),
    }


def batch_for(model, images: int, per_img: int, length: int, regions: int = 36):
    gen = torch.Generator().manual_seed(1)
    if model.config.get("encoder") == "regions":
        feat = model.config.get("encoder_args", {}).get("feat_dim", 2048)
        batch = {"att_feats": torch.randn(images, regions, feat, generator=gen)}
        if model.config.get("name") == "ort":
            xy = torch.rand(images, regions, 2, generator=gen) * 0.5
            batch["boxes"] = torch.cat([xy, xy + 0.4], dim=-1)
    else:
        batch = {"images": torch.randint(0, 255, (images, 3, 64, 64), dtype=torch.uint8, generator=gen)}
    tokens = torch.randint(4, 10001, (images * per_img, length), generator=gen)
    tokens[:, 0] = 2
    return batch, tokens


def train_step(variant, batch, tokens, per_img: int, step: int) -> None:
    """One training step of a (model, method, groups, optimiser) variant, up to the method's ``after_step``."""
    model, method, groups, opt = variant
    if method:
        method.before_step(step)
    memory = model.expand_memory(model.encode(batch), per_img)
    loss = caption_xe(model(memory, tokens[:, :-1]).float(), tokens[:, 1:], 0)
    extra = method.extra_loss(step) if method else None
    if extra is not None:  # the paper recipe's sparsity loss (the robust one has none)
        loss = loss + extra
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(groups[0]["params"], 1.0)
    opt.step()


def print_profile(variant, batch, tokens, per_img: int, steps: int) -> None:
    """torch.profiler's table of ``steps`` supermask training steps (top 25 operators by their own time)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = tokens.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for step in range(FIRST_STEP, FIRST_STEP + steps):
            train_step(variant, batch, tokens, per_img, step)
            variant[1].after_step(step)
        if cuda:
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))
    if cuda:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))


def bench_step(name: str, steps: int, warmup: int, images: int, per_img: int, length: int,
               device: str = "cpu", profile: int = 0) -> dict[str, float]:
    """Dense and supermask models built side by side; their steps alternate so machine load hits both alike."""
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    variants = {}
    for kind in ("dense", "supermask"):
        model = model_for(name).to(dev).train()
        method = None
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
        if kind == "supermask":
            # a run of RUN_STEPS steps timed mid-ramp (from 0.4 T): the threshold moves as it does in real runs
            method = SupermaskMethod(0.95, total_steps=RUN_STEPS)
            method.attach(model)
            groups += method.param_groups()
        variants[kind] = (model, method, groups, torch.optim.Adam(groups, lr=1e-4))
    batch, tokens = batch_for(variants["dense"][0], images, per_img, length)
    batch, tokens = {k: v.to(dev) for k, v in batch.items()}, tokens.to(dev)
    times: dict[str, list[float]] = {kind: [] for kind in variants}
    after: list[float] = []
    for step in range(warmup + steps):
        for kind, variant in variants.items():
            method = variant[1]
            sync()
            t0 = time.perf_counter()
            train_step(variant, batch, tokens, per_img, FIRST_STEP + step)
            if method:
                sync()
                t1 = time.perf_counter()
                method.after_step(FIRST_STEP + step)
                sync()
                if step >= warmup:
                    after.append(time.perf_counter() - t1)
            sync()
            if step >= warmup:
                times[kind].append(time.perf_counter() - t0)
    if profile:
        print_profile(variants["supermask"], batch, tokens, per_img, profile)
    results = {f"{kind}_s": statistics.median(t) for kind, t in times.items()}
    results["supermask_after_step_s"] = statistics.median(after)  # the threshold's update between steps
    results.update({f"{kind}_min_s": min(t) for kind, t in times.items()})
    results["ratio_supermask_over_dense"] = results["supermask_s"] / results["dense_s"]
    results["ratio_min"] = results["supermask_min_s"] / results["dense_min_s"]  # least disturbed by machine load
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ud-paper", help="preset: ud-paper (~53 M) or ort-paper (~55 M)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of the mask computation")
    ap.add_argument("--steps", type=int, default=4, help="timed training steps per variant")
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps per variant")
    ap.add_argument("--images", type=int, default=10, help="images per batch")
    ap.add_argument("--captions", type=int, default=5, help="captions per image")
    ap.add_argument("--length", type=int, default=16, help="tokens per caption")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--device", default="cpu", help="cpu | cuda: where the training steps run (masks: CPU)")
    ap.add_argument("--skip-mask", action="store_true", help="time the training steps only")
    ap.add_argument("--profile", type=int, default=0, help="also print torch.profiler's table of N supermask steps")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"model": args.model, "threads": torch.get_num_threads(), "device": args.device}
    if not args.skip_mask:
        out["mask"] = bench_mask(args.model, args.repeats)
    out["step"] = bench_step(args.model, args.steps, args.warmup, args.images, args.captions, args.length,
                             args.device, args.profile)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    s = out["step"]
    if "mask" in out:
        m = out["mask"]
        print(f"model {args.model}: {m['params'] / 1e6:.1f} M parameters, {m['prunable'] / 1e6:.1f} M prunable; "
              f"{out['threads']} CPU threads")
        print(f"global magnitude mask @95%: ours {m['ours_s']:.3f} s, torch global_unstructured {m['torch_s']:.3f} s "
              f"→ ours/torch = {m['ratio_ours_over_torch']:.2f}× (target ≤ 1.0)")
    print(f"training steps on {args.device}, {args.images} images × {args.captions} captions")
    print(f"training step (median): dense {s['dense_s']:.3f} s, supermask {s['supermask_s']:.3f} s "
          f"→ supermask/dense = {s['ratio_supermask_over_dense']:.2f}× (target ≤ 1.3)")
    print(f"training step (min):    dense {s['dense_min_s']:.3f} s, supermask {s['supermask_min_s']:.3f} s "
          f"→ supermask/dense = {s['ratio_min']:.2f}×")
    print(f"of the supermask step, the threshold's update after it (median): {s['supermask_after_step_s']:.3f} s")


if __name__ == "__main__":
    main()
