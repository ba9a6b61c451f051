"""Masks on any nn.Module: which tensors, shared/tied weights once, sampling, baking, save/load."""

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsecap_engine.checkpoint.dense import dedup_state
from sparsecap_engine.checkpoint.model_io import load_model
from sparsecap_engine.checkpoint.pruned import load_masks, masks_path, save_pruned
from sparsecap_engine.pruning.masks import attach, bake, baked_state_dict, find_masks
from sparsecap_engine.pruning.methods import FixedMethod, MagnitudeMethod
from sparsecap_engine.pruning.report import nnz_within, sparsity_report
from sparsecap_engine.pruning.scope import prunable
from sparsecap_engine.text.vocab import Vocab
from tests.test_models_updown import tiny

UD_NAMES = [
    "decoder.embed.0.weight",
    "decoder.fc_embed.0.weight",
    "decoder.att_embed.0.weight",
    "decoder.ctx2att.weight",
    "decoder.core.att_lstm.weight_ih",
    "decoder.core.att_lstm.weight_hh",
    "decoder.core.lang_lstm.weight_ih",
    "decoder.core.lang_lstm.weight_hh",
    "decoder.core.h2att.weight",
    "decoder.core.alpha_net.weight",
    "decoder.logit.weight",
]


class SharedDepths(nn.Module):
    """An ACORT-like stack: one block object at depths 0–1, another at depth 2; tied embedding/output weights."""

    def __init__(self, d: int = 8, v: int = 11):
        super().__init__()
        self.embed = nn.Embedding(v, d)
        self.pos_embed = nn.Embedding(16, d)
        shared = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        self.layers = nn.ModuleList([shared, shared, nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))])
        self.out = nn.Linear(d, v, bias=False)
        self.out.weight = self.embed.weight  # tied

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos_embed(torch.arange(tokens.shape[1]))
        for layer in self.layers:
            x = x + layer(x)
        return self.out(x)


def test_prunable_updown_weight_matrices_only():
    names = list(prunable(tiny()))
    assert names == UD_NAMES  # no biases, no conv/BatchNorm of the pixel encoder


def test_prunable_by_module_type():
    class Zoo(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 6, num_layers=2, bidirectional=True)
            self.att = nn.MultiheadAttention(8, 2)
            self.norm = nn.LayerNorm(8)
            self.conv = nn.Conv1d(3, 3, 1)
            self.position_embeddings = nn.Embedding(10, 8)

    names = set(prunable(Zoo()))
    lstm = {f"lstm.weight_{g}_l{k}{s}" for g in ("ih", "hh") for k in (0, 1) for s in ("", "_reverse")}
    assert names == lstm | {"att.in_proj_weight", "att.out_proj.weight"}


def test_masked_lstm_and_attention_use_the_mask():
    lstm, att = nn.LSTM(4, 5), nn.MultiheadAttention(8, 2)
    for module in (lstm, att):
        masks = attach(module, "hard")
        masks.set({n: torch.zeros_like(m) for n, m in masks.hard().items() if "hh" in n or "in_proj" in n})
    x = torch.randn(3, 2, 4)
    ref = nn.LSTM(4, 5)
    ref.load_state_dict({k: v for k, v in baked_state_dict(lstm).items()})
    assert torch.allclose(lstm(x)[0], ref(x)[0])
    q = torch.randn(3, 2, 8)
    out = att(q, q, q)[0]
    assert torch.allclose(out, att.out_proj.bias.expand_as(out), atol=1e-6)  # v = 0 → only the output bias


def test_shared_module_and_tied_weight_pruned_once():
    model = SharedDepths()
    names = list(prunable(model))
    assert names == ["embed.weight", "layers.0.0.weight", "layers.2.0.weight"]  # no pos_embed, no out (tied)
    masks = attach(model, "hard")
    assert len(masks.slots) == 3 and len(masks.owners["embed.weight"]) == 2
    zero = torch.zeros(8, 8, dtype=torch.bool)
    zero[:, :4] = True
    masks.set({"layers.0.0.weight": zero})
    # the same parametrization serves both depths
    assert model.layers[0] is model.layers[1] and parametrize.is_parametrized(model.layers[1][0], "weight")
    assert torch.equal(model.layers[1][0].weight[:, 4:], torch.zeros(8, 4))
    rep = sparsity_report(model)
    assert rep["tensors"]["layers.0.0.weight"]["nnz"] == 32
    assert rep["pruned"]["numel"] == 11 * 8 + 64 + 64  # each tensor counted once
    state = baked_state_dict(model)
    assert state["layers.0.0.weight"].data_ptr() == state["layers.1.0.weight"].data_ptr()
    _, aliases = dedup_state(state)
    assert aliases["layers.1.0.weight"] == "layers.0.0.weight"
    # tied: one mask on the embedding also masks the output layer
    emb = torch.ones(11, 8, dtype=torch.bool)
    emb[3] = False
    masks.set({"embed.weight": emb})
    assert torch.equal(model.out.weight[3], torch.zeros(8))
    plain = SharedDepths()
    plain.load_state_dict(state, strict=True)


def test_bake_keeps_parameters_and_outputs():
    model = SharedDepths().eval()
    tokens = torch.randint(0, 11, (2, 5))
    params = {id(p) for p in model.parameters()}
    masks = attach(model, "hard")
    masks.set({n: torch.rand(m.shape) > 0.5 for n, m in masks.hard().items()})
    before = model(tokens)
    hard = bake(model)
    assert not find_masks(model) and not any(parametrize.is_parametrized(m) for m in model.modules())
    assert {id(p) for p in model.parameters()} == params
    assert torch.allclose(model(tokens), before)
    assert torch.equal(model.layers[0][0].weight == 0, ~hard["layers.0.0.weight"])


def test_supermask_one_sample_per_step_round_in_eval():
    lin = nn.Linear(50, 40)
    masks = attach(lin, "supermask", init=0.0)  # σ(0) = 0.5: samples differ from step to step
    masks.begin_step()
    a, b = lin.weight, lin.weight
    assert a is b  # one sample for the whole forward pass
    masks.end_step()
    masks.begin_step()
    c = lin.weight
    masks.end_step()
    assert not torch.equal(a != 0, c != 0)
    lin.eval()
    with torch.no_grad():
        assert torch.equal(lin.weight, torch.zeros(40, 50))  # round(σ(0)) = 0 → pruned
    logits = masks.slots["weight"].logits
    with torch.no_grad():
        logits[:20] = 1.0
    with torch.no_grad():
        assert torch.equal(lin.weight != 0, (logits > 0) & (lin.parametrizations.weight.original != 0))


def test_supermask_straight_through_gradient():
    lin = nn.Linear(3, 2, bias=False)
    masks = attach(lin, "supermask", init=5.0)
    lin.eval()
    x = torch.randn(4, 3)
    lin(x).sum().backward()
    s = masks.slots["weight"].logits
    w = lin.parametrizations.weight.original
    p = torch.sigmoid(s.detach())
    expected = x.sum(0).expand(2, 3) * w.detach() * p * (1 - p)
    assert torch.allclose(s.grad, expected)


def test_masks_survive_save_and_load(tmp_path: Path):
    model = tiny()
    method = MagnitudeMethod(0.7, criterion="uniform")
    method.attach(model)
    vocab = Vocab([f"w{i}" for i in range(16)])
    path = tmp_path / "best.safetensors"
    masks, sparsity = method.checkpoint_masks()
    save_pruned(path, model, vocab, masks, sparsity, step=3)
    masks, _ = load_masks(masks_path(path))
    loaded, _, meta = load_model(path)  # the plain model class, no masks
    assert meta["step"] == 3 and abs(meta["sparsity"]["sparsity"] - 0.7) < 1e-3
    state = dict(loaded.named_parameters())
    for name, mask in method.masks.hard().items():
        assert torch.equal(masks[name], mask.cpu())
        assert torch.equal(state[name] != 0, mask)
    again = FixedMethod(0.7, masks=masks)
    again.attach(tiny())
    assert all(torch.equal(again.masks.hard()[n], m) for n, m in masks.items())


def test_frozen_scope_stays_dense():
    model = tiny()
    method = MagnitudeMethod(0.9, freeze=["decoder.core.", "decoder.logit"])
    method.attach(model)
    rep = sparsity_report(model)
    for name, t in rep["tensors"].items():
        frozen = name.startswith(("decoder.core.", "decoder.logit"))
        assert t["pruned"] is not frozen
        if frozen:
            assert t["sparsity"] == 0.0 and not parametrize.is_parametrized(model.get_submodule(name.rsplit(".", 1)[0]))
    n = rep["pruned"]["numel"]
    assert rep["pruned"]["nnz"] == n - round(0.9 * n)  # exactly the target over the pruned tensors


def test_nnz_rule():
    assert nnz_within(0.95, 0.95) and nnz_within(0.9476, 0.95) and not nnz_within(0.94, 0.95)
    assert not nnz_within(0.5, 0.95)


@pytest.mark.parametrize("kind", ["hard", "supermask"])
def test_attach_twice_is_refused(kind: str):
    lin = nn.Linear(3, 3)
    attach(lin, kind)
    with pytest.raises(ValueError, match="already"):
        attach(lin, kind)


def test_supermask_sparsity_loss_shares_the_weight_node():
    from sparsecap_engine.pruning.methods import SupermaskMethod

    torch.manual_seed(0)
    lin = nn.Linear(6, 4, bias=False)
    method = SupermaskMethod(0.5, total_steps=10, recipe="paper")
    method.attach(lin)
    slot = method.masks.slots["weight"]
    with torch.no_grad():
        slot.logits.normal_()
    lin.eval()  # deterministic mask: round(σ(s))
    method.before_step(5)
    x = torch.randn(3, 6)
    loss = lin(x).sum() + method.extra_loss(5)
    assert slot.step_kept() is not None  # the count came from the weight's own node
    loss.backward()
    method.after_step(5)
    s, w = slot.logits.detach(), lin.parametrizations.weight.original.detach()
    kept = float((s > 0).sum())
    c = method.sparsity_weight * method.anneal(5) * (1 if 0.5 - (1 - kept / 24) < 0 else -1) * (-1 / 24)
    p = torch.sigmoid(s)
    assert torch.allclose(slot.logits.grad, (x.sum(0).expand(4, 6) * w + c) * p * (1 - p), atol=1e-6)


def test_topk_mask_buffer_reused_across_steps_with_exact_gradients():
    """The robust recipe's top-k mask is written into one buffer per tensor, step after step, and gives the same
    masked weight and gradients as a fresh mask would (``∂/∂w = g ⊙ m``, ``∂/∂s = g ⊙ w``); it counts nothing."""
    from sparsecap_engine.pruning.methods import SupermaskMethod

    torch.manual_seed(0)
    lin = nn.Linear(6, 4, bias=False)
    method = SupermaskMethod(0.5, total_steps=10, recipe="robust")
    method.attach(lin)
    method.setup()
    slot = method.masks.slots["weight"]
    w = lin.parametrizations.weight.original
    with torch.no_grad():
        slot.logits.normal_()
    lin.train()
    pointers = set()
    for shift in (-0.5, 0.3):  # the threshold moves between steps: the buffer must follow it
        slot.shift = shift
        method.masks.begin_step()
        x = torch.randn(3, 6)
        out = lin(x)
        assert slot.step_kept() is None  # the robust recipe never reads the count
        pointers.add(slot._mask_buffer.data_ptr())
        m = (slot.logits.detach() > shift).float()
        assert torch.equal(lin.weight, w.detach() * m)
        slot.logits.grad = w.grad = None
        out.sum().backward()
        method.masks.end_step()
        g = x.sum(0).expand(4, 6)
        assert torch.allclose(w.grad, g * m) and torch.allclose(slot.logits.grad, g * w.detach())
    assert len(pointers) == 1


def test_plain_checkpoint_loads_into_masked_model():
    """Resume / fine-tune: a baked state dict restores weights and hard masks of a freshly masked model."""
    trained = tiny()
    method = MagnitudeMethod(0.6, criterion="blind")
    method.attach(trained)
    baked = baked_state_dict(trained)
    fresh = tiny()
    masks = attach(fresh, "hard")
    fresh.load_state_dict(baked)  # strict: plain keys map onto the parametrizations
    for name, mask in method.masks.hard().items():
        assert torch.equal(masks.hard()[name], mask)
    assert all(torch.equal(a, b) for a, b in zip(baked_state_dict(fresh).values(), baked.values(), strict=True))
    bake(fresh)
    fresh.load_state_dict(baked)  # plain again after baking
