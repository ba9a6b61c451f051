"""Transformer, ORT, ACORT options: shapes, masks, gradients, sharing, incremental decoding == teacher forcing."""

from __future__ import annotations

import math

import pytest
import torch

from sparsecap_engine.decoding.greedy import greedy
from sparsecap_engine.errors import DataError, UsageError
from sparsecap_engine.models.base import index_batch
from sparsecap_engine.models.ort import box_deltas, box_embedding
from sparsecap_engine.models.registry import build_model
from sparsecap_engine.models.transformer import layer_order

V = 23
SHARE_ATT = ["", "kv", "qk"]
SHARE_LAYERS = [[], [0, 0, 1, 1], [0, 0, 0]]


def tiny(name: str = "ort", encoder: str = "regions", **kw):
    cfg = {"name": name, "d_model": 16, "dim_feedforward": 32, "num_layers": 2, "num_heads": 2, **kw}
    if encoder == "regions":
        cfg.update(encoder="regions", encoder_args={"feat_dim": 12})
    else:
        cfg.update(encoder="grid-cnn", encoder_args={"channels": [8, 16]})
    torch.manual_seed(0)
    return build_model(cfg, vocab_size=V)


def region_batch(b: int = 3, n: int = 5, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, n, 12, generator=g)
    mask = torch.ones(b, n)
    mask[0, 3:] = 0
    mask[-1, 2:] = 0
    xy = torch.rand(b, n, 2, generator=g) * 0.5
    boxes = torch.cat([xy, xy + 0.05 + torch.rand(b, n, 2, generator=g) * 0.45], -1)
    return {"att_feats": feats, "att_masks": mask, "boxes": boxes}


def random_tokens(b: int, t: int, seed: int = 2) -> torch.Tensor:
    tokens = torch.randint(4, V, (b, t), generator=torch.Generator().manual_seed(seed))
    tokens[:, 0] = 2
    return tokens


@pytest.mark.parametrize("name", ["transformer", "ort"])
@pytest.mark.parametrize("share_att", SHARE_ATT)
@pytest.mark.parametrize("share_layers", SHARE_LAYERS)
def test_incremental_decoding_equals_teacher_forcing(name: str, share_att: str, share_layers: list[int]):
    """Step-by-step log-probs == teacher-forced ones (1e-5) for every model and sharing setting (reference §1.6 bug)."""
    model = tiny(name, share_att=share_att, share_layers=share_layers).eval()
    memory = model.encode(region_batch())
    tokens = random_tokens(3, 8)
    full = model(memory, tokens)
    state = model.init_state(memory)
    for t in range(tokens.shape[1]):
        logp, state = model.step(memory, tokens[:, t], state)
        assert torch.allclose(logp, full[:, t], atol=1e-5), (t, (logp - full[:, t]).abs().max())
    depth = len(share_layers) or 2
    assert {k for k in state if k.startswith("k")} == {f"k{i}" for i in range(depth)}  # one cache per depth


@pytest.mark.parametrize("share_att", SHARE_ATT)
def test_batch_one_decoding_step_equals_teacher_forcing(share_att: str):
    """Batch 1 runs its decoding step on one vector (d,), not (1, 1, d) rows: the same log-probs, shape (1, V)."""
    model = tiny("ort", share_att=share_att, share_layers=[0, 1, 1]).eval()
    batch = {k: v[1:2] for k, v in region_batch().items()}
    memory = model.encode(batch)
    tokens = random_tokens(1, 6)
    full = model(memory, tokens)
    state = model.init_state(memory)
    for t in range(tokens.shape[1]):
        logp, state = model.step(memory, tokens[:, t], state)
        assert logp.shape == (1, V)
        assert torch.allclose(logp, full[:, t], atol=1e-5), (t, (logp - full[:, t]).abs().max())


def test_training_mode_step_applies_dropout_and_passes_gradients():
    """SCST samples with the model in training mode and differentiates through ``step``: dropout acts (two steps from
    the same state differ), and the log-probs' gradient reaches the decoder's weights."""
    model = tiny("transformer", dropout=0.5).train()
    memory = model.encode(region_batch())
    state = model.init_state(memory)
    tokens = torch.full((3,), 2, dtype=torch.long)
    a, _ = model.step(memory, tokens, state)
    b, _ = model.step(memory, tokens, state)
    assert not torch.allclose(a, b)
    # dropout draws in forward's order and shapes: with one seed, the step is teacher forcing of the first position
    for rows in (3, 1):
        mem = {k: v[:rows] for k, v in memory.items()}
        torch.manual_seed(7)
        full = model(mem, tokens[:rows, None])
        torch.manual_seed(7)
        one, _ = model.step(mem, tokens[:rows], model.init_state(mem))
        assert torch.allclose(one, full[:, 0], atol=1e-5), (rows, (one - full[:, 0]).abs().max())
    a[:, 5].sum().backward()
    layer = model.decoder.decoder_layers[0]
    assert layer.ffn.w_1.weight.grad is not None and layer.ffn.w_1.weight.grad.abs().sum() > 0
    assert layer.self_attn.v_proj.weight.grad.abs().sum() > 0  # (Q has none at step 0: one key, softmax ≡ 1)
    assert layer.cross_attn.q_proj.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():  # and eval mode is deterministic
        assert torch.equal(model.step(memory, tokens, state)[0], model.step(memory, tokens, state)[0])


def test_layer_norm_is_the_reference_formula():
    """``a·(x − mean)/(σ + ε) + b`` with the unbiased σ, to ~ε/σ relative (the fused kernel computes
    ``a·(x − mean)/√(σ² + ε²) + b``); a constant row gives ``b``, not NaN; gradients agree too."""
    from sparsecap_engine.models.transformer import LayerNorm

    torch.manual_seed(0)
    ln = LayerNorm(32)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 5, 32) * torch.tensor([0.01, 0.3, 1.0, 30.0]).view(4, 1, 1)
    x.requires_grad_(True)
    ref = ln.weight * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + ln.eps) + ln.bias
    out = ln(x)
    assert torch.allclose(out[1:], ref[1:], rtol=1e-5, atol=1e-5)  # σ ≥ 0.3: ε/σ ≤ 3e-6
    assert torch.allclose(out[0], ref[0], rtol=2e-4, atol=2e-4)  # σ = 0.01: ε/σ = 1e-4
    g_ref = torch.autograd.grad(ref.square().sum(), x)[0]
    g_out = torch.autograd.grad(out.square().sum(), x)[0]
    assert torch.allclose(g_out[1:], g_ref[1:], rtol=1e-4, atol=1e-4)
    assert (g_out[0] - g_ref[0]).norm() < 1e-3 * g_ref[0].norm()
    const = ln(torch.full((2, 32), 3.0))
    assert torch.allclose(const, ln.bias.expand(2, 32))
    # a plain (biased-σ) layer norm would be off by √(n/(n−1)) ≈ 1.6 %: the test tells the two apart
    plain = torch.nn.functional.layer_norm(x, (32,), ln.weight, ln.bias, 1e-6)
    assert not torch.allclose(plain, ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", ["transformer", "ort"])
def test_incremental_decoding_through_pixels_and_beam_reorder(name: str):
    model = tiny(name, encoder="grid", share_att="kv", share_layers=[0, 1, 1]).eval()
    memory = model.encode({"images": torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)})
    assert memory["mask"].shape == (2, 64)
    tokens = random_tokens(2, 6)
    full = model(memory, tokens)
    # beams: expand memory, reorder states with a permutation, compare against teacher forcing of the same rows
    mem3 = model.expand_memory(memory, 3)
    tok3 = tokens.repeat_interleave(3, 0)
    state = model.init_state(mem3)
    perm = torch.tensor([2, 0, 1, 5, 3, 4])
    for t in range(tokens.shape[1]):
        logp, state = model.step(mem3, tok3[:, t], state)
        assert torch.allclose(logp, full.repeat_interleave(3, 0)[:, t], atol=1e-5)
        state = model.reorder_state(state, perm)  # rows of one image are interchangeable: stays equal
    assert index_batch(state, torch.tensor([0]))["k0"].shape[0] == 1


@pytest.mark.parametrize("name", ["transformer", "ort"])
def test_shapes_and_logprobs(name: str):
    model = tiny(name)
    memory = model.expand_memory(model.encode(region_batch()), 5)
    logp = model(memory, random_tokens(15, 7))
    assert logp.shape == (15, 7, V)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(15, 7), atol=1e-5)


@pytest.mark.parametrize("name", ["transformer", "ort"])
def test_padded_regions_do_not_matter(name: str):
    model = tiny(name).eval()
    batch = region_batch()
    changed = {k: v.clone() for k, v in batch.items()}
    changed["att_feats"][0, 3:] = 100.0
    changed["boxes"][0, 3:] = torch.tensor([0.9, 0.9, 0.95, 0.99])
    tokens = random_tokens(3, 5)
    a = model(model.encode(batch), tokens)
    b = model(model.encode(changed), tokens)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", ["transformer", "ort"])
def test_step_masks_padding_only_when_there_is_some(name: str):
    """Incremental decoding of a padded batch (cross-attention masked) equals decoding each image alone with just its
    real regions (no padding: the unmasked kernel), step by step."""
    model = tiny(name).eval()
    batch = region_batch()
    tokens = random_tokens(3, 5)
    memory = model.encode(batch)
    assert "cross_mask" in memory
    state = model.init_state(memory)
    together = []
    for t in range(tokens.shape[1]):
        logp, state = model.step(memory, tokens[:, t], state)
        together.append(logp)
    for i in range(3):
        n = int(batch["att_masks"][i].sum())
        alone = model.encode({k: v[i : i + 1, :n] for k, v in batch.items()})
        assert "cross_mask" not in alone
        state = model.init_state(alone)
        for t in range(tokens.shape[1]):
            logp, state = model.step(alone, tokens[i : i + 1, t], state)
            assert torch.allclose(logp[0], together[t][i], atol=1e-5), (i, t)


def test_trailing_padding_is_clipped():
    model = tiny("ort").eval()
    batch = region_batch()
    batch["att_masks"][:, 4] = 0  # column 4 is padding everywhere
    memory = model.encode(batch)
    assert memory["mask"].shape[1] == 4 and memory["ck0"].shape[2] == 4


def test_ort_geometry_matters_and_transformer_ignores_boxes():
    batch = region_batch()
    moved = {**batch, "boxes": batch["boxes"].flip(1)}
    tokens = random_tokens(3, 4)
    for name, differs in (("ort", True), ("transformer", False)):
        model = tiny(name).eval()
        a, b = model(model.encode(batch), tokens), model(model.encode(moved), tokens)
        assert (not torch.allclose(a, b, atol=1e-4)) == differs, name


def test_ort_needs_boxes():
    batch = region_batch()
    del batch["boxes"]
    with pytest.raises(DataError, match="boxes"):
        tiny("ort").encode(batch)


@pytest.mark.parametrize("name", ["transformer", "ort"])
def test_gradient_reaches_every_parameter(name: str):
    model = tiny(name, encoder="grid", share_att="qk", share_layers=[0, 1, 0]).train()
    memory = model.expand_memory(model.encode({"images": torch.rand(2, 3, 32, 32)}), 2)
    model(memory, random_tokens(4, 6)).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_box_geometry_formula():
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.25, 0.75, 0.5]]])
    d = box_deltas(boxes)
    # i=0, j=1: |cx0 - cx1| / w0 = |0.25 - 0.625| / 0.5, |cy0 - cy1| / h0 = |0.25 - 0.375| / 0.5, w0/w1, h0/h1
    assert torch.allclose(d[0, 0, 1], torch.tensor([math.log(0.75), math.log(0.25), math.log(2.0), math.log(2.0)]))
    assert torch.allclose(d[0, 0, 0], torch.tensor([math.log(1e-3), math.log(1e-3), 0.0, 0.0]))
    ref = box_deltas(boxes, wh_offset=1.0)  # the reference's pixel-era +1
    assert torch.allclose(ref[0, 0, 1, 2], torch.tensor(math.log(1.5 / 1.25)))
    emb = box_embedding(d)
    assert emb.shape == (1, 2, 2, 64)
    args = 100 * d[0, 0, 1, 0] / 1000 ** (torch.arange(8) / 8)
    assert torch.allclose(emb[0, 0, 1, :8], torch.sin(args), atol=1e-5)
    assert torch.allclose(emb[0, 0, 1, 32:40], torch.cos(args), atol=1e-5)


def test_layer_sharing_and_attention_sharing_structure():
    model = tiny("ort", share_att="kv", share_layers=[0, 0, 0, 1, 1, 1])
    dec = model.decoder
    assert len(dec.encoder_layers) == 2 and len(dec.decoder_layers) == 2 and len(dec.dec_order) == 6
    attn = dec.decoder_layers[0].self_attn
    assert hasattr(attn, "kv_proj") and not hasattr(attn, "k_proj")
    qk = tiny("transformer", share_att="qk").decoder.decoder_layers[0].cross_attn
    assert hasattr(qk, "qk_proj") and hasattr(qk, "v_proj") and not hasattr(qk, "q_proj")
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == len(set(names))
    assert not any("pe" in n for n in model.state_dict())  # positional table recomputed, never saved
    separate = tiny("ort", share_att_encoder="", share_att_decoder="qk", share_layers_encoder=[0, 0])
    assert hasattr(separate.decoder.encoder_layers[0].self_attn, "k_proj")
    assert len(separate.decoder.encoder_layers) == 1 and len(separate.decoder.decoder_layers) == 2


def test_layer_order_parsing():
    assert layer_order("(0, 0, 0, 1, 1, 1)", 3, "x") == (0, 0, 0, 1, 1, 1)
    assert layer_order([], 3, "x") == (0, 1, 2)
    for bad in ("(0, 2)", "nonsense", [1, 1]):
        with pytest.raises(UsageError):
            layer_order(bad, 3, "x")
    with pytest.raises(UsageError, match="share_att"):
        tiny("ort", share_att="vq")


def test_greedy_decoding_runs():
    model = tiny("ort", share_layers=[0, 0]).eval()
    memory = model.encode(region_batch())
    seqs = greedy(model, memory, bos=2, eos=3, pad=0, max_len=6)
    assert seqs.shape[0] == 3 and seqs.shape[1] <= 6


@pytest.mark.parametrize(
    "name,vocab,millions",
    [("ud-paper", 10001, 53.15), ("ort-paper", 10001, 55.44), ("acort-base", 771, 14.98), ("acort-small", 771, 4.21),
     ("ort-small", 10001, 16.72), ("ort-xsmall", 10001, 4.14), ("transformer-paper", 10001, 55.44)],
)
def test_paper_preset_sizes(name: str, vocab: int, millions: float):
    """Paper preset sizes (reference: UD 53.1 M, ORT 55.4 M, ACORT 15.0 M / 4.2 M; 2048-d regions)."""
    from sparsecap_engine.models.registry import preset
    from sparsecap_engine.models.summary import parameter_breakdown

    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = build_model(preset(name), vocab)
    breakdown = parameter_breakdown(model)
    assert round(breakdown["total"] / 1e6, 2) == millions
    assert sum(breakdown["modules"].values()) == breakdown["total"]


def test_cpu_presets_are_defaults_and_small():
    from sparsecap_engine.config import ModelConfig
    from sparsecap_engine.training.setup import resolve_model

    for name, preset_name in (("transformer", "transformer-small"), ("ort", "ort-cpu"), ("updown", "ud-small")):
        cfg = resolve_model(ModelConfig(name=name))
        assert cfg["name"] == name and cfg.get("encoder") == "grid-cnn", preset_name
        model = build_model(cfg, 80)
        assert sum(p.numel() for p in model.parameters()) < 3_000_000


def test_checkpoint_round_trip_with_sharing_and_radix(tmp_path):
    from sparsecap_engine.checkpoint.model_io import load_model, save_model
    from sparsecap_engine.text.radix import RadixTokenizer
    from sparsecap_engine.text.vocab import Vocab

    radix = RadixTokenizer(Vocab([f"w{i}" for i in range(40)]), V - 3)
    model = tiny("ort", share_att="kv", share_layers=[0, 0, 1]).eval()
    save_model(tmp_path / "m.safetensors", model, radix, step=3)
    loaded, tok, meta = load_model(tmp_path / "m.safetensors")
    assert tok == radix and meta["step"] == 3 and meta["model"]["share_layers"] == [0, 0, 1]
    batch, tokens = region_batch(), random_tokens(3, 5)
    assert torch.equal(loaded(loaded.encode(batch), tokens), model(model.encode(batch), tokens))


@pytest.mark.parametrize("share_att", SHARE_ATT)
@pytest.mark.parametrize("rows", [1, 3])
def test_pass_bound_step_equals_teacher_forcing(share_att: str, rows: int):
    """The step bound once for a whole decoding pass (eval, no autograd) gives the teacher-forced log-probs step after
    step, at batch 1 (one vector) and for 3 padded rows (cross-attention masked), and the same caches as ``step``; in
    training mode or with autograd on, ``stepper`` is ``step`` itself (weights read at every step)."""
    from sparsecap_engine.models.transformer_stepper import BoundStep

    model = tiny("ort", share_att=share_att, share_layers=[0, 1, 1]).eval()
    batch = {k: v[:rows] for k, v in region_batch().items()}
    tokens = random_tokens(rows, 6)
    with torch.no_grad():
        memory = model.encode(batch)
        assert ("cross_mask" in memory) == (rows == 3)
        full = model(memory, tokens)
        bound = model.stepper()
        assert isinstance(bound, BoundStep)
        a = b = model.init_state(memory)
        for t in range(tokens.shape[1]):
            la, a = model.step(memory, tokens[:, t], a)
            lb, b = bound(memory, tokens[:, t], b)
            assert lb.shape == (rows, V)
            assert torch.allclose(lb, full[:, t], atol=1e-5), (t, (lb - full[:, t]).abs().max())
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert model.stepper() == model.decoder.step  # autograd on
    with torch.no_grad():
        assert model.train().stepper() == model.decoder.step
