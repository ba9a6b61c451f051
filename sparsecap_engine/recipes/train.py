"""The XE training recipe: the only place that knows the order of things (data → model → hooks → loop → checkpoints).

Every ``val_every`` steps and at the end: greedy decoding of validation images, in-process CIDEr-D and BLEU-4,
``val``/``samples``/``sparsity`` events, ``last`` checkpoint, ``best`` when CIDEr-D improves (and the hooks agree).
At the end a ``run_end`` event: ``completed``, ``stopped``, ``interrupted``, or ``target-missed`` when a pruning run
completed without reaching its target sparsity (:func:`target_check`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sparsecap_engine.atomic import atomic_write_bytes
from sparsecap_engine.checkpoint.model_io import save_model
from sparsecap_engine.checkpoint.pruned import save_pruned
from sparsecap_engine.config import RunConfig
from sparsecap_engine.data.loader import PrefetchedSplit, auto_workers
from sparsecap_engine.decoding.api import DecodeOptions, caption_images
from sparsecap_engine.errors import UsageError
from sparsecap_engine.humanize import percent
from sparsecap_engine.metrics.bleu import bleu_scores
from sparsecap_engine.metrics.cider import compute_cider
from sparsecap_engine.models.base import CaptionModel
from sparsecap_engine.models.registry import build_model
from sparsecap_engine.models.summary import write_breakdown
from sparsecap_engine.plots import curves_png
from sparsecap_engine.progress import Progress, no_progress
from sparsecap_engine.runs import EventLog, RunDir
from sparsecap_engine.text.tokenizer import load_tokenizer
from sparsecap_engine.training.distributed import NO_LOG, current, data_parallel, trained_state
from sparsecap_engine.training.gradients import clip_gradients
from sparsecap_engine.training.hooks import call
from sparsecap_engine.training.objectives import Objective, xe_objective
from sparsecap_engine.training.schedules import make_schedule
from sparsecap_engine.training.setup import (
    Splits,
    check_config,
    fit_encoder,
    load_splits,
    resolve_device,
    resolve_model,
    seed_everything,
)
from sparsecap_engine.training.state import load_trainer_state, save_trainer_state


@dataclass
class TrainResult:
    run: RunDir
    status: str
    step: int
    best_step: int | None
    best_cider: float | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    #: pruning runs: the end-of-run verdict of :func:`target_check` (``None``: the hooks report no target)
    reached: bool | None = None
    #: pruning runs: the verdict in words (target, final sparsity, NNZ)
    target_message: str = ""
    #: what ``run_end`` says beside the status (why it stopped, the target verdict)
    message: str = ""


def target_check(report: dict[str, Any] | None, best_step: int | None) -> tuple[bool, str] | None:
    """Did a pruning run reach its target sparsity? ``report`` is the hooks' last ``sparsity`` event body (``target``,
    ``overall``, ``nnz``, ``numel``), taken at the run's final validation; ``None`` when the hooks report no target.

    Reached means, **at the end of the run**: (1) the final hard masks' NNZ is within 5 % of the target's (the project's
    rule, ``pruning/report.py`` ``nnz_within``, the one ``best`` obeys) and (2) a ``best`` checkpoint exists (the
    pruned checkpoint is exported from it). Having been within the rule at some earlier validation only is not enough:
    the masks a run ends with are what it delivers, and a run that drifted out of the rule failed. Returns
    ``(reached, message)``; a missed target reads ``target sparsity 95.00% missed: reached 0.01% (NNZ 1,234,567 vs
    target ≤ 98,765)``.
    """
    if not report or report.get("target") is None or report.get("overall") is None:
        return None
    from sparsecap_engine.pruning.report import nnz_within

    target, s = float(report["target"]), float(report["overall"])
    nnz, numel = report.get("nnz"), report.get("numel")
    within = nnz_within(s, target)
    if nnz is None or numel is None:
        counts = ""
    else:
        goal = (1.0 - target) * numel
        if within:
            counts = f" (NNZ {nnz:,}, target {round(goal):,} ± 5 %)"
        elif nnz > goal:
            counts = f" (NNZ {nnz:,} vs target ≤ {math.floor(goal * 1.05 + 1e-9):,})"
        else:
            counts = f" (NNZ {nnz:,} vs target ≥ {math.ceil(goal * 0.95 - 1e-9):,})"
    if not within:
        return False, f"target sparsity {percent(target)} missed: reached {percent(s)}{counts}"
    if best_step is None:
        return False, (f"target sparsity {percent(target)} missed: final {percent(s)}{counts} but no best checkpoint "
                       "was kept")
    return True, f"target sparsity {percent(target)} reached: final {percent(s)}{counts}, best at step {best_step}"


def validate(
    model: CaptionModel, data, vocab, device: torch.device, n_images: int, max_len: int, batch_size: int = 64,
    progress: Progress = no_progress,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Greedy captions for the first ``n_images`` images → (metrics, per-image items). In a multi-process run each
    rank decodes every ``world``-th image and the captions are gathered: every rank scores the same set.
    ``progress("validate", images decoded, images)`` follows the decoding (this rank's share)."""
    model.eval()
    dist = current()
    n = min(n_images, len(data)) if n_images > 0 else len(data)
    opts = DecodeOptions(max_len=max_len)
    mine = list(range(dist.rank, n, dist.world))
    caps = caption_images(model, data, mine, vocab, opts, device, batch_size, progress, task="validate")
    for part in dist.gather(caps) if dist.active else ():
        caps.update(part)
    hyps: dict[int, str] = {}
    items: list[dict[str, Any]] = []
    for i in range(n):
        rec = data.records[i]
        hyps[rec.image_id] = caps[i]
        items.append({"image": str(rec.path), "image_id": rec.image_id, "caption": caps[i]})
    refs = data.references(range(n))
    cider, _ = compute_cider(refs, hyps)
    bleu, _ = bleu_scores(refs, hyps)
    for item in items:
        item["refs"] = refs[item["image_id"]][:3]
    model.train()
    return {"CIDEr-D": float(cider), "BLEU-4": float(bleu[3])}, items


def _batch_index(step: int, batch: int, n: int, seed: int) -> list[int]:
    """Images of step ``step``: a fresh permutation per epoch, seeded by (seed, epoch) so resume is exact."""
    per_epoch = max(1, n // batch)
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch))
    return perm[pos * batch : (pos + 1) * batch].tolist()


def train(
    config: RunConfig,
    run: RunDir,
    progress: Progress = no_progress,
    hooks: object | None = None,
    init_weights: dict[str, torch.Tensor] | None = None,
    resume: bool = False,
    stop: Callable[[], bool | str | None] | None = None,
    splits: Splits | None = None,
    objective: Objective | None = None,
) -> TrainResult:
    """Run (or resume) training in ``run``: XE unless another ``objective`` is given (e.g. SCST, ``scst.py``).

    ``hooks`` is a pruning method or any plug-in (see ``hooks.py``)."""
    tc, oc = config.train, config.optim
    check_config(config)
    dist = current()  # a multi-process run (torchrun): rank 0 alone writes into the run directory
    main = dist.is_main
    dist.check_batch(tc.batch_size)
    if main:
        run.lock()  # one writer per run: a second `--resume` of it is told who holds it, before anything is read
    seed_everything(tc.seed)
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    device = dist.device(resolve_device(tc.device))
    model_cfg = resolve_model(config.model)

    if resume:
        from sparsecap_engine.training.state import check_vocab

        check_vocab(run)  # before anything is rewritten: a swapped vocab.json would size the model and be baked in
    saved_vocab = load_tokenizer(run.vocab_path) if resume and run.vocab_path.is_file() else None
    splits = splits or load_splits(config.data, vocab=saved_vocab, progress=progress, model=model_cfg)
    if tc.batch_size > len(splits.train):  # every step would silently take the whole split instead
        raise UsageError(f"train.batch_size {tc.batch_size} is larger than the {len(splits.train)} training images")
    model_cfg = fit_encoder(model_cfg, splits)  # region features → regions encoder of their width
    vocab = splits.vocab
    objective = objective or xe_objective(config, vocab.pad_id)
    model = build_model(model_cfg, len(vocab))
    if main:
        vocab.save(run.vocab_path)
        run.save_config(config)
        write_breakdown(run.path / "model_params.json", model)
    if init_weights is not None:
        model.load_state_dict(init_weights)
    call(hooks, "attach", model)
    model.to(device).train()

    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "scheduled": True}]
    for g in call(hooks, "param_groups", default=[]) or []:
        groups.append({**g, "scheduled": False})
    optimizer = torch.optim.Adam(groups, lr=oc.lr, betas=tuple(oc.betas), eps=oc.eps, weight_decay=oc.weight_decay)
    schedule = make_schedule(oc, tc.steps, int(model_cfg.get("d_model", model_cfg.get("rnn_size", 512))))
    use_amp = tc.amp and device.type == "cuda"
    # AMP: bf16 where the GPU has it (fp32's range: no loss scaling), else fp16 with a GradScaler
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    regions = splits.train.features.regions if splits.train.features is not None else None

    def save(name: str, step: int, **extra: Any) -> None:
        if not main:
            return
        path = run.checkpoints / f"{name}.safetensors"
        meta = {"step": step, "image_size": config.data.image_size, **extra}
        if regions:  # e.g. the synthetic scenes' regions: `caption` computes them from an image's pixels
            meta["regions"] = regions
        pruned = call(hooks, "checkpoint_masks", default=None)
        if pruned is not None:  # pruning: masks baked into the weights, and a masks sibling
            masks, sparsity = pruned
            save_pruned(path, model, vocab, masks, sparsity, **meta)
        else:
            save_model(path, model, vocab, **meta)

    log = EventLog(run.events_path) if main else NO_LOG
    start, best_cider, best_step = 0, None, None
    last_saved: int | None = None
    last_report: dict[str, Any] | None = None
    if resume:
        for stale in run.checkpoints.glob(".*.tmp") if main else ():  # a write a kill interrupted: the finished
            stale.unlink(missing_ok=True)  # file is intact
        start, best_cider, best_step = load_trainer_state(run, model, optimizer, scaler, device, hooks, dist.world)
        last_saved = start
        logged = max((e["step"] for e in run.events() if e.get("kind") == "train"), default=0)
    else:
        logged = 0
        save("init", 0)
        log.write("run_start", 0, config=config.to_dict(), model=model_cfg, device=str(device),
                  params=sum(p.numel() for p in model.parameters()), train_images=len(splits.train),
                  skipped_train_images=splits.skipped_train, processes=dist.world,
                  amp=str(amp_dtype).removeprefix("torch.") if use_amp else None)

    def checkpoint(step: int, metrics: dict[str, float] | None) -> None:
        """``last`` and the trainer state; ``best`` too when ``metrics`` beat it (None: a save without validation)."""
        nonlocal best_cider, best_step, last_saved
        save("last", step, **({"metrics": metrics} if metrics is not None else {}))
        last_saved = step
        ready = metrics is not None and call(hooks, "ready", step, default=True)
        is_best = ready and (best_cider is None or metrics["CIDEr-D"] > best_cider)
        if is_best:
            best_cider, best_step = metrics["CIDEr-D"], step
            save("best", step, metrics=metrics)
        if main:
            save_trainer_state(run, step, optimizer, scaler, best_cider, best_step, model,
                               call(hooks, "state_dict", default=None), dist.world)
        log.write("checkpoint", step, path=str(run.checkpoints / "last.safetensors"), best=is_best)

    def evaluate(step: int) -> dict[str, float]:
        nonlocal last_report
        metrics, items = validate(model, splits.val, vocab, device, tc.val_images, config.data.max_len,
                                  progress=progress)
        log.write("val", step, metrics=metrics)
        log.write("samples", step, items=items[: tc.samples])
        report = call(hooks, "report", step)
        if report is not None:
            log.write("sparsity", step, **report)
            last_report = report
        if dist.active:  # identical by construction: a drift would be a bug, never a silently different model
            dist.check_same(trained_state(model, extra_params), f"weights and masks at step {step}")
        checkpoint(step, metrics)
        return metrics

    amp_ctx = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if use_amp else contextlib.nullcontext
    extra_params = [p for g in optimizer.param_groups[1:] for p in g["params"]]  # e.g. supermask logits
    train_data = splits.train
    workers = auto_workers(config.data.workers, device, train_data.features is not None,
                           int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    if workers > 0 and start < tc.steps:  # region features read ahead by DataLoader workers, in the loop's order
        blocks = [dist.part(_batch_index(s, tc.batch_size, len(train_data), tc.seed)) for s in range(start, tc.steps)]
        train_data = PrefetchedSplit(train_data, blocks, workers, pin_memory=device.type == "cuda")
    trainable = [p.requires_grad for p in extra_params]  # DDP's parameters: wrapped again when this changes
    step_loss = objective if not dist.active else data_parallel(model, extra_params, objective)
    metrics: dict[str, float] = {}
    status, message, done = "completed", "", start
    t0, seen = time.perf_counter(), 0
    progress("train", start, tc.steps)  # the bar from the first step, with its elapsed time
    #: multi-process: a stop request seen by any rank during the last step (learnt with its finiteness check)
    stop_all = False
    try:
        for step in range(start, tc.steps):
            reason = stop() if stop is not None else None
            if dist.active:  # every rank stops at the same step: the one after a rank saw the request
                reason = (reason or "a signal reached another rank") if stop_all else None
            if reason:  # a string names a signal (interrupted); True is the monitor's Stop button
                status = "interrupted" if isinstance(reason, str) else "stopped"
                message = f"{reason}; last checkpoint saved" if isinstance(reason, str) else "stopped by the user"
                break
            lr = schedule(step)
            for g in optimizer.param_groups:
                if g["scheduled"]:
                    g["lr"] = lr
            call(hooks, "before_step", step)
            if dist.active and trainable != [p.requires_grad for p in extra_params]:  # e.g. supermask hardened
                trainable = [p.requires_grad for p in extra_params]
                step_loss = data_parallel(model, extra_params, objective)
            index = _batch_index(step, tc.batch_size, len(splits.train), tc.seed)
            with amp_ctx():
                loss, info = step_loss(model, train_data, index, step)
                extra = call(hooks, "extra_loss", step)
                total = loss + extra if extra is not None else loss
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
            norm = clip_gradients(optimizer, oc.grad_clip, oc.grad_clip_mode)
            finite = bool(torch.isfinite(total.detach() + norm))  # one device sync per step
            if dist.active:  # one all-reduce per step carries both flags
                bad, stop_all = dist.any_each(not finite, bool(stop() if stop is not None else None))
                finite = not bad
            if not scaler.is_enabled() and not finite:
                # fp16's scaler skips such steps itself; in fp32 or bf16 the update would poison the weights
                value = total.item()
                what = f"loss {value:g}" if not math.isfinite(value) else "gradient norm not finite"
                kept = f"step {last_saved}" if last_saved is not None else "none"
                status, message = "diverged", f"diverged at step {step + 1}: {what}; last good checkpoint: {kept}"
                break
            scaler.step(optimizer)
            scaler.update()
            call(hooks, "after_step", step)
            done = step + 1
            seen += int(info.pop("items", len(index))) * dist.world
            if done in tc.keep_steps:  # weights at step k, for lottery-ticket late rewinding
                save(f"step-{done}", done)
            if (done % tc.log_every == 0 or done == tc.steps) and done > logged:  # a replayed step: logged already
                rate = seen / max(1e-9, time.perf_counter() - t0)
                epoch = step * tc.batch_size / max(1, len(splits.train))
                value = (dist.sum(loss.detach()) / dist.world).item()  # the global batch's loss
                current_sparsity = call(hooks, "sparsity", default=None)
                if current_sparsity is not None:  # pruning runs: the hard masks now (gradual's ramp, SMP's descent)
                    info["sparsity"] = round(float(current_sparsity), 6)
                if device.type == "cuda":  # this process's peak since the last log
                    info["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                    torch.cuda.reset_peak_memory_stats(device)
                log.write("train", done, epoch=round(epoch, 3), loss=value, lr=lr, items_per_s=round(rate, 1), **info)
                progress("train", done, tc.steps, loss=value, items_per_s=round(rate, 1), **info)
                t0, seen = time.perf_counter(), 0
            if done % tc.val_every == 0 and done != tc.steps:
                metrics = evaluate(done)
    except KeyboardInterrupt:  # no signal handler installed (library use): the weights are those of step `done`
        status, message = "interrupted", "interrupted (Ctrl-C); last checkpoint saved"
    if isinstance(train_data, PrefetchedSplit):
        train_data.close()
    step = done
    if status == "interrupted":  # to be resumed: save at once (a SIGTERM's grace is short) and leave `best` to the
        if last_saved != step:  # run's own validations, so N/2 steps + resume picks the same best as N straight
            checkpoint(step, None)
    elif status != "diverged":
        metrics = evaluate(step)
    call(hooks, "finalize")
    note = dict(call(hooks, "end_note", default=None) or {})  # e.g. whether the target sparsity was reached
    verdict = target_check(last_report, best_step)
    if verdict is not None:  # a pruning run: the verdict at the end replaces the method's "was it ever reached"
        note["target_reached"], note["message"] = verdict
        if status == "completed" and not verdict[0]:
            status = "target-missed"  # an interrupted or stopped run keeps its own status
    message = "; ".join(m for m in (message, note.pop("message", "")) if m)
    log.write("run_end", step, status=status, message=message, best_step=best_step, best_cider=best_cider, **note)
    log.close()
    if main:
        atomic_write_bytes(run.plots / "curves.png", curves_png(run.events(), run.path.name))
    dist.barrier()  # rank 0's files are complete before any rank goes on (a lottery round reads them)
    reached, target_message = verdict if verdict is not None else (None, "")
    return TrainResult(run, status, step, best_step, best_cider, metrics, reached, target_message, message)
