"""Pruning methods on small models: exact one-shot sparsity, the cubic schedule, supermask, SNIP, ACORT sharing."""

import math

import pytest
import torch
from torch import nn

from sparsecap_engine.errors import UsageError
from sparsecap_engine.models.registry import build_model, preset
from sparsecap_engine.pruning.criteria import GradualSchedule, cubic_sparsity, dist_scores, n_keep, select
from sparsecap_engine.pruning.methods import (
    GradualMethod,
    MagnitudeMethod,
    SnipMethod,
    SupermaskMethod,
    build_method,
)
from sparsecap_engine.pruning.report import sparsity_report
from sparsecap_engine.pruning.scope import prunable
from tests.test_models_updown import tiny


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))


def test_magnitude_blind_is_global_and_exact():
    model = tiny()
    weights = {n: getattr(m, p).detach().clone() for n, (m, p) in prunable(model).items()}
    method = MagnitudeMethod(0.8, criterion="blind")
    method.attach(model)
    total = sum(w.numel() for w in weights.values())
    rep = sparsity_report(model)
    assert rep["pruned"]["nnz"] == n_keep(total, 0.8)
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    kept = torch.cat([method.masks.hard()[n].flatten() for n in weights])
    assert flat[kept].min() >= flat[~kept].max()  # one global threshold on |w|


def test_magnitude_uniform_exact_per_layer():
    model = tiny()
    MagnitudeMethod(0.75, criterion="uniform").attach(model)
    for name, t in sparsity_report(model)["tensors"].items():
        assert t["nnz"] == n_keep(t["numel"], 0.75), name


def test_magnitude_dist_standardised_global_threshold():
    model = tiny()
    weights = {n: getattr(m, p).detach().clone() for n, (m, p) in prunable(model).items()}
    method = MagnitudeMethod(0.9, criterion="dist")
    method.attach(model)
    z = dist_scores(weights)
    ref = weights["decoder.logit.weight"]
    assert torch.allclose(z["decoder.logit.weight"], ((ref - ref.mean()) / ref.std(unbiased=False)).abs())
    flat = torch.cat([z[n].flatten() for n in weights])
    kept = torch.cat([method.masks.hard()[n].flatten() for n in weights])
    assert int(kept.sum()) == n_keep(flat.numel(), 0.9) and flat[kept].min() >= flat[~kept].max()


def test_blind_can_wipe_a_layer_and_the_guard_keeps_it():
    weights = {"big": torch.randn(100, 100), "tiny": torch.randn(10, 10) * 1e-4}
    sel = select("blind", weights, 0.9)
    assert sel.emptied == ["tiny"] and any("tiny" in w for w in sel.warnings())
    guarded = select("blind", weights, 0.9, min_density=0.05)
    assert int(guarded.masks["tiny"].sum()) == 5 and "tiny" in guarded.guarded
    assert sum(int(m.sum()) for m in guarded.masks.values()) == n_keep(10100, 0.9)  # still exact overall
    with pytest.raises(UsageError, match="min-density"):
        select("blind", weights, 0.99, min_density=0.5)


@pytest.mark.parametrize("criterion", ["blind", "uniform", "dist"])
def test_gradual_follows_cubic_schedule(criterion: str):
    torch.manual_seed(0)
    model = mlp()
    method = GradualMethod(0.9, criterion=criterion, total_steps=60, start=5, end=41, every=4)
    method.attach(model)
    assert (method.schedule.start, method.schedule.end, method.schedule.every) == (5, 41, 4)
    prev = {n: m.clone() for n, m in method.masks.hard().items()}
    changed_after: list[int] = []  # loop steps (0-based) after which the masks changed
    for step in range(60):
        method.before_step(step)
        with torch.no_grad():  # stand-in for an optimiser step: weights move
            for w in method.masks.weights().values():
                w.add_(torch.randn_like(w) * 0.01)
        method.after_step(step)
        hard = method.masks.hard()
        for n, m in hard.items():
            assert not bool((m & ~prev[n]).any()), "a pruned weight grew back"
        if any(not torch.equal(m, prev[n]) for n, m in hard.items()):
            changed_after.append(step)
        prev = {n: m.clone() for n, m in hard.items()}
    updates = [t for t, _, _ in method.history]
    assert updates == list(range(5, 42, 4))
    # "prune after step t" = after t optimiser steps: the call for 0-based step t - 1 (the first one, at t = 5 with
    # s_t = 0, removes nothing)
    assert changed_after == [t - 1 for t in range(9, 42, 4)]
    numel = sum(m.numel() for m in method.masks.hard().values())
    for t, s_t, achieved in method.history:
        assert s_t == pytest.approx(0.9 + (0.0 - 0.9) * (1 - (t - 5) / 36) ** 3)
        if criterion == "uniform":
            assert achieved == pytest.approx(s_t, abs=0.02)
        else:
            assert achieved == pytest.approx(1 - n_keep(numel, s_t) / numel, abs=1e-9)
    assert method.sparsity() == pytest.approx(0.9, abs=0.01) and method.ready(60)


def test_gradual_defaults_scale_with_run_length():
    sched = GradualSchedule.scaled(113280, 0.95)
    assert (sched.start, sched.every) == (7552, 1000) and sched.end <= 113280 // 2
    assert sched.at(sched.end) == pytest.approx(0.95) and sched.at(sched.start) == 0.0
    small = GradualSchedule.scaled(300, 0.9)
    assert small.every == 3 and small.start == 20 and small.end <= 150
    assert cubic_sparsity(10**6, 0.0, 0.9, 0, 10) == 0.9


def test_supermask_paper_recipe_reaches_target_after_short_run():
    torch.manual_seed(0)
    model, teacher = mlp(), nn.Linear(16, 4)
    steps = 200
    method = SupermaskMethod(0.8, total_steps=steps, recipe="paper")
    method.attach(model)
    (group,) = method.param_groups()
    assert (group["lr"], group["eps"], group["weight_decay"]) == (100.0, 1e-2, 0.0)
    assert method.sparsity_weight == pytest.approx(max(5.0, 1.5 / 0.2))  # auto rule (non-Up-Down)
    assert all(float(s.logits.detach().min()) == 5.0 for s in method.masks.slots.values())
    opt = torch.optim.Adam([{"params": list(model.parameters())}, group], lr=1e-3)
    for step in range(steps):
        method.before_step(step)
        x = torch.randn(32, 16)
        loss = ((model(x) - teacher(x).detach()) ** 2).mean() + method.extra_loss(step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(step)
    assert method.sparsity() == pytest.approx(0.8, abs=0.05)
    body = method.report(steps)
    assert body["overall"] == pytest.approx(method.sparsity()) and body["target"] == 0.8


def test_supermask_auto_weight_for_updown():
    method = SupermaskMethod(0.975, recipe="paper")
    method.attach(tiny())
    assert method.sparsity_weight == pytest.approx(20.0)  # max(5, 0.5 / 0.025)
    assert method.anneal(0) == 0.0 and method.anneal(1) == pytest.approx(1.0)


def test_supermask_frozen_scope_not_masked_nor_sampled():
    model = tiny()
    method = SupermaskMethod(0.5, freeze=["decoder.logit"])
    method.attach(model)
    assert "decoder.logit.weight" in method.masks.frozen and "decoder.logit.weight" not in method.masks.slots
    method.before_step(0)
    assert bool((model.decoder.logit.weight != 0).all())  # dense, no Bernoulli drop
    method.after_step(0)


def test_snip_ranks_by_abs_grad_times_weight():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    dense = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    dense.load_state_dict(model.state_dict())
    xs = [torch.randn(8, 6) for _ in range(2)]

    def loss_fn(m: nn.Module, i: int) -> torch.Tensor:
        return (m(xs[i]) ** 2).mean() - m(xs[i]).sum() * 0.1

    for i in range(2):
        loss_fn(dense, i).backward()
    saliency = {"0.weight": (dense[0].weight.grad * dense[0].weight).abs(),
                "2.weight": (dense[2].weight.grad * dense[2].weight).abs()}
    method = SnipMethod(0.6, snip_batches=2)
    method.attach(model)
    method.loss_fn = loss_fn
    method.before_step(0)
    flat = torch.cat([s.flatten() for s in saliency.values()])
    kept = torch.cat([method.masks.hard()[n].flatten() for n in saliency])
    assert int(kept.sum()) == n_keep(flat.numel(), 0.6)
    assert flat[kept].min() >= flat[~kept].max()
    signed = torch.cat([(dense[0].weight.grad * dense[0].weight).flatten(),
                        (dense[2].weight.grad * dense[2].weight).flatten()])
    assert not torch.equal(kept, signed >= signed.kthvalue(flat.numel() - int(kept.sum()) + 1).values)
    assert all(p.grad is None for p in model.parameters())  # saliency gradients are not left for the optimiser
    method.after_step(0)


def test_acort_shared_layers_pruned_once():
    cfg = preset("acort-cpu")  # share_layers (0, 0, 1, 1): 4 depths, 2 layer objects; share_att kv
    model = build_model(cfg, 40)
    dense = build_model(cfg, 40)
    dense.load_state_dict(model.state_dict())
    names = list(prunable(model))
    assert sum(".ffn.w_1." in n for n in names) == 4  # 2 unique encoder + 2 unique decoder layers, not 8 depths
    assert not any(".v_proj." in n for n in names)  # kv sharing: one projection for K and V
    assert len(names) == len({id(getattr(m, p)) for m, p in prunable(model).values()})
    params = {id(p) for p in model.parameters()}
    method = MagnitudeMethod(0.9, criterion="blind")
    method.attach(model)
    assert {id(p) for p in model.parameters()} == params  # no copies made
    rep = sparsity_report(model)
    assert rep["pruned"]["numel"] == sum(getattr(m, p).numel() for m, p in prunable(dense).values())
    assert rep["pruned"]["nnz"] == n_keep(rep["pruned"]["numel"], 0.9)
    # the masked model computes exactly what the plain model computes with w ⊙ m at every depth
    for name, mask in method.masks.hard().items():
        module, pname = prunable(dense)[name]
        with torch.no_grad():
            getattr(module, pname).mul_(mask)
    model.eval(), dense.eval()
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    tokens = torch.randint(0, 40, (2, 5))
    with torch.no_grad():
        out = model(model.encode({"images": images}), tokens)
        ref = dense(dense.encode({"images": images}), tokens)
    assert torch.allclose(out, ref, atol=1e-5)


def test_unknown_method_and_bad_options():
    with pytest.raises(UsageError, match="unknown pruning method"):
        build_method("optimal-brain-surgeon", sparsity=0.9)
    with pytest.raises(UsageError, match="criterion"):
        build_method("magnitude", sparsity=0.9, criterion="random")
    with pytest.raises(UsageError, match="sparsity"):
        build_method("gradual", sparsity=1.5)
    assert math.isclose(n_keep(1000, 0.95), 50)


def test_snip_signed_saliency_is_the_reference_ranking_and_inverts_with_a_negative_sum():
    from sparsecap_engine.pruning.criteria import select_global, snip_scores

    w = {"a": torch.tensor([[1.0, 2.0], [-1.0, 3.0]]), "b": torch.tensor([4.0, 1.0])}
    g = {"a": torch.tensor([[1.0, -1.0], [2.0, 1.0]]), "b": torch.tensor([0.5, -3.0])}
    # g ⊙ w = a: [[1, -2], [-2, 3]], b: [2, -3]; Σ = -1: dividing by it flips every sign
    signed = snip_scores(w, g, saliency="signed")
    assert torch.equal(signed["a"], torch.tensor([[-1.0, 2.0], [2.0, -3.0]]))
    assert torch.equal(signed["b"], torch.tensor([-2.0, 3.0]))
    kept = select_global(signed, 0.5).masks  # keeps the 3 largest of 6: the ones |g⊙w| would rank 2nd, 3rd, 1st
    assert kept["a"].tolist() == [[False, True], [True, False]] and kept["b"].tolist() == [False, True]
    unsigned = select_global(snip_scores(w, g), 0.5).masks  # |g⊙w| = [[1, 2], [2, 3]], [2, 3]: keeps 3, 3 and one 2
    assert unsigned["a"][1, 1] and unsigned["b"][1] and not unsigned["a"][0, 0]
    # a pruned weight stays below every live score, negative ones included
    masked = snip_scores(w, g, {"b": torch.tensor([1.0, 0.0])}, saliency="signed")
    assert float(masked["b"][1]) < min(float(s.min()) for s in signed.values())
    with pytest.raises(UsageError, match="unknown SNIP saliency"):
        snip_scores(w, g, saliency="raw")


def test_snip_method_uses_the_configured_saliency():
    with pytest.raises(UsageError, match="prune.snip_saliency"):
        SnipMethod(0.5, snip_saliency="sign")
    assert SnipMethod(0.5, snip_saliency="signed").snip_saliency == "signed"


def _snip_on_words(vocab: int, words: range, sparsity: float = 0.9) -> SnipMethod:
    """SNIP on one saliency batch whose captions use only ``words`` (ids ≥ 4; 0 pad, 2 bos, 3 eos)."""
    from sparsecap_engine.training.losses import caption_xe

    model = tiny("regions", vocab)
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(6, 5, 12, generator=gen)
    choice = torch.tensor(list(words))
    tokens = choice[torch.randint(0, len(choice), (6, 9), generator=gen)]
    tokens[:, 0], tokens[:, -1] = 2, 3

    def loss_fn(m: nn.Module, i: int) -> torch.Tensor:
        return caption_xe(m(m.encode({"att_feats": feats}), tokens[:, :-1]), tokens[:, 1:], 0)

    method = SnipMethod(sparsity)
    method.attach(model)
    method.loss_fn = loss_fn
    method.before_step(0)
    return method


def test_output_vocabulary_counts_the_rows_that_keep_a_weight():
    from sparsecap_engine.pruning.report import output_vocabulary

    model = tiny("regions", 30)
    assert output_vocabulary(model) == {"layer": "decoder.logit.weight", "words": 30, "emit": 30}  # dense
    masks = {"decoder.logit.weight": torch.ones(30, 32, dtype=torch.bool)}
    masks["decoder.logit.weight"][[3, 7, 8]] = False
    masks["decoder.logit.weight"][9, 1:] = False  # one weight left: still a word the model can choose
    assert output_vocabulary(model, masks)["emit"] == 27
    with torch.no_grad():  # a plain pruned model: zero rows count as empty
        model.decoder.logit.weight[:5] = 0.0
    assert output_vocabulary(model)["emit"] == 25
    assert output_vocabulary(mlp()) is None  # no caption model, no vocabulary


def test_snip_drops_the_output_rows_of_words_its_saliency_batch_never_shows_and_says_so():
    from sparsecap_engine.pruning.report import output_vocabulary

    method = _snip_on_words(200, range(4, 14), sparsity=0.97)  # a batch that shows 10 of 196 words
    rows = method.masks.hard()["decoder.logit.weight"].any(dim=1)
    assert rows[4:14].all() and rows[3]  # every word it saw keeps its row, <eos> too
    assert int(rows[14:].sum()) <= 2  # of the 186 it never saw, (almost) none does
    emit = output_vocabulary(method.model)["emit"]
    (warning,) = [w for w in method.warnings if "keep no output weight" in w]
    assert warning.startswith(f"decoder.logit.weight: {200 - emit:,} of 200 words keep no output weight")
    # a batch that shows the whole vocabulary loses no word and warns of none
    method = _snip_on_words(24, range(4, 24), sparsity=0.5)
    assert output_vocabulary(method.model)["emit"] >= 20
    assert not [w for w in method.warnings if "keep no output weight" in w]
