"""Behaviour of the mask code found unpinned by mutation testing (issue 12, ``benchmarks/mutation.py --area pruning
--only masks --only ste --only scope --only smp_control``): which device masks and logits live on, hardened (fixed)
supermasks, the per-step kept count and the sampling outside a step, plain state dicts loaded into masked models
(partial loads, supermasks, explicit masks), baking next to other parametrizations and partly masked modules,
baking a supermask still in training mode, the straight-through estimators' dtypes and gradients, which weights
``scope`` finds (RNN projections, separate q/k/v, ``prunable_weights``, positional names), and the robust recipe's
threshold margin."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsecap_engine.pruning.masks import HardMask, Supermask, attach, bake, baked_state_dict, find_masks

META = torch.device("meta")


class _Double(nn.Module):
    """A parametrization that is not a mask (a user's own reparametrization): ``w ↦ 2w``."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return 2 * w


def _lstm_cell(seed: int = 0) -> nn.LSTMCell:
    torch.manual_seed(seed)
    return nn.LSTMCell(3, 4)


# ------------------------------------------------------------------------------------------------ devices, move_to
def test_masks_and_logits_live_on_the_device_they_are_given_and_moved_to():
    """(Meta device: no data, only placement.) A mask is created on its weight's device; ``move_to`` moves a
    supermask's logits (a trainable leaf Parameter unless the mask is fixed) and its frozen mask."""
    assert HardMask(torch.Size([2, 2]), device=META).mask.device == META
    assert Supermask(torch.Size([2]), device=META).logits.device == META
    on_meta = Supermask(torch.Size([2]), device=META)
    on_meta.fix(torch.tensor([True, False]))  # a CPU mask given to a supermask on meta is frozen on meta
    assert on_meta.hard().device == META

    free = Supermask(torch.Size([2]), init=1.0)
    free.move_to(META)
    assert isinstance(free.logits, nn.Parameter) and free.logits.device == META
    assert free.logits.requires_grad and free.logits.is_leaf and free.fixed is None

    frozen = Supermask(torch.Size([2]), init=1.0)
    frozen.fix(torch.tensor([True, False]))
    frozen.move_to(META)
    assert frozen.logits.device == META and not frozen.logits.requires_grad  # a fixed mask stays out of training
    assert frozen.fixed is not None and frozen.fixed.device == META and frozen.hard().device == META

    model = nn.Sequential(nn.Linear(3, 2, device=META), nn.Linear(3, 2, device=META))
    hard = attach(model[0], "hard").slots["weight"]
    soft = attach(model[1], "supermask").slots["weight"]
    assert hard.mask.device == META and soft.logits.device == META  # attach puts each mask beside its weight

    same = Supermask(torch.Size([2]), init=1.0)
    before = same.logits
    same.move_to(torch.device("cpu"))  # already there: the optimiser's Parameter stays the one in use
    assert same.logits is before


def test_masks_on_another_device_than_the_weight_are_brought_to_the_weight():
    w = torch.empty(2, device=META)
    fixed = Supermask(torch.Size([2]), init=1.0)
    fixed.fix(torch.tensor([True, False]))
    assert fixed(w).device == META
    logits = Supermask(torch.Size([2]), init=1.0).eval()
    with torch.no_grad():
        assert logits(w).device == META
    train = Supermask(torch.Size([2]), init=1.0).train()
    with torch.no_grad():
        assert train(w).device == META


@pytest.mark.filterwarnings("ignore:.*meta parameter:UserWarning")
def test_a_cpu_plain_state_dict_loads_into_a_masked_model_on_another_device():
    """(A checkpoint read on the CPU, the model on its device: the restored mask is built on the mask's device.)"""
    model = nn.Linear(3, 2, device=META)
    masks = attach(model, "hard")
    result = model.load_state_dict(nn.Linear(3, 2).state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert masks.hard()["weight"].device == META


# -------------------------------------------------------------------------------------------- fixed supermasks
def test_a_fixed_supermask_masks_with_the_frozen_mask_in_training_and_eval_and_freezes_the_logits():
    torch.manual_seed(0)
    lin = nn.Linear(5, 4, bias=False)
    slot = attach(lin, "supermask", init=0.0).slots["weight"]  # σ(0) = 0.5: a sample would differ from the mask
    frozen = torch.rand(4, 5) > 0.5
    slot.fix(frozen)
    assert not slot.logits.requires_grad  # the logits get no gradient from now on
    w = lin.parametrizations.weight.original.detach()
    for mode in (True, False):
        lin.train(mode)
        assert torch.equal(lin.weight.detach(), torch.where(frozen, w, 0.0))
    lin(torch.randn(2, 5)).sum().backward()
    assert slot.logits.grad is None and torch.equal(lin.parametrizations.weight.original.grad != 0, frozen)


# ----------------------------------------------------------------------------------------------- kept count
def test_step_kept_is_only_the_count_from_this_steps_autograd_forward():
    lin = nn.Linear(4, 3, bias=False)
    masks = attach(lin, "supermask", init=0.0)
    slot = masks.slots["weight"]
    with torch.no_grad():
        slot.logits.copy_(torch.tensor([[1.0, -1.0, 2.0, 0.5]] * 3))
    slot.shift = 0.75  # keep iff s > τ: 2 per row
    lin.eval()
    lin.weight  # noqa: B018 - a forward pass outside a step (grad mode) ...
    with torch.no_grad():
        lin.weight  # noqa: B018 - ... then one without autograd: still no step, so no step count
    assert slot.step_kept() is None
    masks.begin_step()
    assert slot.step_kept() is None  # no forward pass yet in this step
    with torch.no_grad():
        lin.weight  # noqa: B018 - a step whose forward ran without autograd has no count to share
    assert slot.step_kept() is None
    masks.end_step()
    masks.begin_step()
    lin.weight  # noqa: B018
    kept = slot.step_kept()
    assert kept is not None and kept.item() == 6.0 and kept.requires_grad
    masks.end_step()
    assert slot.step_kept() is None
    lin.weight  # noqa: B018 - after the step: no step count again
    assert slot.step_kept() is None


def test_outside_a_step_every_autograd_access_draws_its_own_sample():
    """The reference's behaviour outside ``begin_step``/``end_step``: each access re-samples (and each backward has
    its own graph); inside a step one sample serves the whole forward pass."""
    torch.manual_seed(0)
    lin = nn.Linear(30, 20, bias=False).train()
    masks = attach(lin, "supermask", init=0.0)  # σ(0) = 0.5
    masks.begin_step()
    a, b = lin.weight != 0, lin.weight != 0
    assert torch.equal(a, b)
    masks.end_step()
    x = torch.randn(2, 30)
    samples = []
    for _ in range(2):
        lin(x).sum().backward()  # would fail on a second pass through one reused graph
        samples.append(lin.weight.detach() != 0)
    assert not torch.equal(samples[0], samples[1])


def test_supermasks_start_at_the_documented_logit_5():
    """Mask logits start at 5 (keep probability σ(5) ≈ 0.993, README: "init 5") unless told otherwise."""
    assert torch.equal(attach(nn.Linear(3, 2), "supermask").slots["weight"].logits, torch.full((2, 3), 5.0))
    assert torch.equal(Supermask(torch.Size([4])).logits, torch.full((4,), 5.0))


# ------------------------------------------------------------------------------------------------- MaskSet.set
def test_set_refuses_unknown_names_and_supermasks_by_name():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    masks = attach(model, "hard")
    with pytest.raises(KeyError, match="'2.weight'"):
        masks.set({"2.weight": torch.ones(2, 2)})
    sm = attach(nn.Linear(2, 2), "supermask")
    with pytest.raises(KeyError, match="'weight'"):
        sm.set({"weight": torch.ones(2, 2)})


# ------------------------------------------------------------------------------------- loading plain state dicts
def test_partial_plain_state_dict_loads_what_it_has_and_reports_the_rest():
    """``strict=False`` with only some weights (e.g. a sub-model's checkpoint): those load with their masks restored
    from their zeros, the others keep their weights and masks and are reported missing."""
    trained = _lstm_cell(0)
    src = attach(trained, "hard")
    src.set({n: torch.rand(m.shape, generator=torch.Generator().manual_seed(1)) > 0.5 for n, m in src.hard().items()})
    baked = baked_state_dict(trained)
    fresh = _lstm_cell(1)
    masks = attach(fresh, "hard")
    masks.set({"weight_ih": torch.rand(16, 3, generator=torch.Generator().manual_seed(2)) > 0.3})
    ih_before, ih_mask = fresh.parametrizations.weight_ih.original.detach().clone(), masks.hard()["weight_ih"].clone()
    result = fresh.load_state_dict({k: v for k, v in baked.items() if k != "weight_ih"}, strict=False)
    assert sorted(result.missing_keys) == ["parametrizations.weight_ih.0.mask", "parametrizations.weight_ih.original"]
    assert result.unexpected_keys == []
    assert torch.equal(fresh.parametrizations.weight_ih.original, ih_before)
    assert torch.equal(masks.hard()["weight_ih"], ih_mask)
    assert torch.equal(fresh.weight_hh, baked["weight_hh"])
    assert torch.equal(masks.hard()["weight_hh"], src.hard()["weight_hh"])


def test_plain_state_dict_loads_into_a_supermask_model_and_an_explicit_mask_wins():
    trained = nn.Linear(3, 2)
    with torch.no_grad():
        trained.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 4.0]]))
    state = trained.state_dict()
    sm_model = nn.Linear(3, 2)
    slot = attach(sm_model, "supermask", init=-1.0).slots["weight"]
    logits = slot.logits.detach().clone()
    sm_model.load_state_dict(state)  # the weights load; the logits (not in any state dict) stay as they are
    assert torch.equal(sm_model.parametrizations.weight.original, state["weight"])
    assert torch.equal(slot.logits, logits)
    hard_model = nn.Linear(3, 2)
    masks = attach(hard_model, "hard")
    given = torch.tensor([[True, True, False], [False, False, True]])
    hard_model.load_state_dict({**state, "parametrizations.weight.0.mask": given})
    assert torch.equal(masks.hard()["weight"], given)  # not mask ∧ (w ≠ 0): the state dict's own mask is used
    assert torch.equal(hard_model.weight, state["weight"] * given)


def test_attach_after_bake_loads_plain_state_dicts_again():
    model = nn.Linear(4, 3)
    masks = attach(model, "hard")
    masks.set({"weight": torch.rand(3, 4, generator=torch.Generator().manual_seed(0)) > 0.5})
    baked = baked_state_dict(model)
    bake(model)
    again = attach(model, "hard")
    model.load_state_dict(baked)
    assert torch.equal(again.hard()["weight"], baked["weight"] != 0)


# ---------------------------------------------------------------------- baking next to other parametrizations
def test_partly_masked_module_beside_a_non_mask_parametrization():
    """Only ``weight_hh`` of an LSTM cell is masked and the linear layer before it carries a user's own
    parametrization: finding, baked state dict and baking touch the masks only."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.LSTMCell(3, 4))
    parametrize.register_parametrization(model[0], "weight", _Double())
    masks = attach(model, "hard", names=["1.weight_hh"])
    assert masks.frozen == ["0.weight", "1.weight_ih"]
    mask = torch.rand(16, 4) > 0.5
    masks.set({"1.weight_hh": mask})
    assert find_masks(model) == {"1.weight_hh": masks.slots["1.weight_hh"]}
    x = torch.randn(2, 3)
    out = model[1](model[0](x))[0]

    baked = baked_state_dict(model)
    plain = nn.Sequential(nn.Linear(3, 3), nn.LSTMCell(3, 4))
    plain.load_state_dict(baked)  # strict: exactly the plain model's keys
    assert torch.equal(baked["0.weight"], model[0].weight)  # the parametrized value, 2w
    assert torch.equal(baked["1.weight_hh"], model[1].parametrizations.weight_hh.original * mask)
    assert torch.allclose(plain[1](plain[0](x))[0], out)

    hard = bake(model)
    assert list(hard) == ["1.weight_hh"] and torch.equal(hard["1.weight_hh"], mask)
    assert not parametrize.is_parametrized(model[1])
    assert parametrize.is_parametrized(model[0], "weight")  # the user's parametrization is left alone
    assert torch.allclose(model[1](model[0](x))[0], out)


def test_baking_a_supermask_in_training_mode_uses_the_hard_mask_not_a_sample():
    torch.manual_seed(0)
    lin = nn.Linear(40, 30).train()
    slot = attach(lin, "supermask").slots["weight"]
    with torch.no_grad():
        slot.logits.copy_(torch.where(torch.rand(30, 40) > 0.5, 0.1, -0.1))  # σ ≈ 0.5: samples differ from [s > 0]
    keep = slot.logits.detach() > 0
    expected = lin.parametrizations.weight.original.detach() * keep
    assert torch.equal(baked_state_dict(lin)["weight"], expected)
    hard = bake(lin)
    assert torch.equal(hard["weight"], keep) and torch.equal(lin.weight.detach(), expected)


# ------------------------------------------------------------------------------------- straight-through estimators
def test_kept_count_counts_positive_logits_with_the_sigmoid_derivative_as_gradient():
    """``kept_count(s) = Σ round(σ(s)) = #{s > 0}`` (``s = 0`` is pruned) in the logits' dtype; ``∂/∂s = g·σ'(s)``."""
    from sparsecap_engine.pruning.ste import kept_count

    s = torch.tensor([[2.0, 0.0], [-1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    kept = kept_count(s)
    assert kept.item() == 2.0 and kept.dtype == torch.float64 and kept.shape == ()
    (3.0 * kept).backward()
    p = torch.sigmoid(s.detach())
    assert torch.allclose(s.grad, 3.0 * p * (1 - p))


def test_a_low_precision_model_keeps_its_dtype_under_float32_mask_logits():
    """A bf16 model with supermasks (the logits are float32, outside the model): the masked weight stays bf16, so
    the layer runs, and both the weights and the logits get gradients of their own dtype."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 3, bias=False).to(torch.bfloat16)
    slot = attach(lin, "supermask").slots["weight"]
    assert slot.logits.dtype == torch.float32
    for mode in (True, False):
        lin.train(mode)
        out = lin(torch.randn(2, 4, dtype=torch.bfloat16))
        assert lin.weight.dtype == torch.bfloat16 and out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert lin.parametrizations.weight.original.grad.dtype == torch.bfloat16
    assert slot.logits.grad.dtype == torch.float32


def test_topk_sparsity_term_alone_leaves_the_weights_without_a_gradient():
    """Deterministic top-k with only the kept count in the loss: the logits get the identity gradient and the
    weights none at all (``None``, not zeros: an optimiser then skips them, no momentum or weight decay step)."""
    from sparsecap_engine.pruning.ste import _Supermask

    w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    s = torch.tensor([0.5, -0.25, 1.0], requires_grad=True)
    _, kept = _Supermask.apply(w, s, False, 0.0, 1.0, True)
    kept.backward()
    assert w.grad is None and torch.equal(s.grad, torch.ones(3))
    w2 = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    s2 = torch.tensor([0.5, -0.25, 1.0], requires_grad=True)
    out, _ = _Supermask.apply(w2, s2, False, 0.0, 1.0, True)
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()  # the weight term alone: ∂/∂s = g ⊙ w, ∂/∂w = g ⊙ m
    assert torch.equal(s2.grad, torch.tensor([1.0, -4.0, 9.0])) and torch.equal(w2.grad, torch.tensor([1.0, 0.0, 3.0]))


# ----------------------------------------------------------------------------------------- scope: which weights
def test_recurrent_and_attention_layers_expose_every_weight_matrix():
    """Unidirectional stacks, LSTM projections (``weight_hr``, even of size 1) and attention with separate q/k/v
    projections (``kdim``/``vdim`` ≠ ``embed_dim``)."""
    from sparsecap_engine.pruning.scope import prunable

    assert set(prunable(nn.LSTM(4, 5, num_layers=2))) == {
        f"weight_{g}_l{k}" for g in ("ih", "hh") for k in (0, 1)}
    assert set(prunable(nn.GRU(4, 5))) == {"weight_ih_l0", "weight_hh_l0"}
    assert set(prunable(nn.LSTM(4, 6, proj_size=1))) == {"weight_ih_l0", "weight_hh_l0", "weight_hr_l0"}
    att = nn.MultiheadAttention(8, 2, kdim=4, vdim=6)
    assert set(prunable(att)) == {"q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"}


class _Custom(nn.Module):
    """A custom layer that opts in with ``prunable_weights`` (a 1-D scale and an absent name are never pruned)."""

    prunable_weights = ("scale", "missing", "kernel", "gate")

    def __init__(self, tied: nn.Parameter | None = None):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.kernel = tied if tied is not None else nn.Parameter(torch.randn(3, 4))
        self.gate = nn.Parameter(torch.randn(2, 3))
        self.helper = nn.Linear(3, 3)


class _OptOut(nn.Linear):
    prunable_weights = ()


def test_custom_modules_opt_in_and_out_with_prunable_weights():
    from sparsecap_engine.pruning.scope import prunable

    model = nn.Sequential(_Custom(), _OptOut(3, 3))
    assert list(prunable(model)) == ["0.kernel", "0.gate", "0.helper.weight"]  # a 1-D or absent name is skipped
    masks = attach(model, "hard")
    assert set(masks.slots) == {"0.kernel", "0.gate", "0.helper.weight"}
    # a tied tensor met first (here: the kernel is the first layer's weight) does not hide the module's next weights
    first = nn.Linear(4, 3)
    tied = nn.Sequential(first, _Custom(first.weight))
    found = prunable(tied)
    assert list(found) == ["0.weight", "1.gate", "1.helper.weight"]
    assert [(m, p) for m, p in attach(tied, "hard").owners["0.weight"]] == [(first, "weight"), (tied[1], "kernel")]


def test_only_an_embeddings_own_name_marks_it_positional():
    """Positional tables are recognised by the embedding's own (last) name, not by the containers it sits in."""
    from sparsecap_engine.pruning.scope import prunable

    model = nn.ModuleDict({
        "enc": nn.ModuleDict({"pos_stage": nn.ModuleDict({
            "words": nn.Embedding(10, 4), "position": nn.Embedding(10, 4), "pos_embed": nn.Embedding(10, 4)})}),
        "pos_stage": nn.ModuleDict({"tokens": nn.Embedding(10, 4), "pe": nn.Embedding(10, 4)}),
    })
    assert list(prunable(model)) == ["enc.pos_stage.words.weight", "pos_stage.tokens.weight"]


# ----------------------------------------------------------------------- robust supermask: the threshold's margin
def test_threshold_sits_one_logit_beyond_the_extremes():
    """Keeping everything (the dense start), ``τ`` is one below the lowest logit; keeping nothing, one above the
    highest; with floors, a budget that covers all the rest puts ``τ`` one below the lowest of them. The Bernoulli
    recipe then samples with ``σ(κ(s − τ))``: ``σ(1)`` ≈ 0.73 for logits all at their init (methods.py: "every logit
    sits one above the threshold", ~27 % of the weights dropped per step at the start)."""
    from sparsecap_engine.pruning.smp_control import keep_threshold, keep_thresholds

    logits = [torch.full((3,), 5.0), torch.tensor([5.5, 7.0])]
    assert keep_threshold(logits, 0.0) == 4.0
    assert keep_threshold(logits, 1.0) == 8.0
    assert keep_thresholds(logits, 0.0, [1, 1]) == [4.0, 4.0]
    torch.manual_seed(0)
    n = 20000
    sm = Supermask(torch.Size([n]), init=5.0).train()
    sm.shift = keep_threshold([sm.logits], 0.0)
    with torch.no_grad():
        assert 0.71 < float(sm(torch.ones(n)).mean()) < 0.75  # σ(1) = 0.731
