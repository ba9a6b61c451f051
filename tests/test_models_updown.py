import torch

from sparsecap_engine.decoding.greedy import greedy
from sparsecap_engine.models.registry import build_model, preset


def tiny(encoder: str = "grid-cnn", vocab_size: int = 20):
    cfg = preset("ud-small")
    cfg.update(rnn_size=32, input_encoding_size=16, att_hid_size=16, drop_prob_lm=0.0)
    if encoder == "grid-cnn":
        cfg["encoder_args"] = {"channels": [8, 16]}
    else:
        cfg["encoder"], cfg["encoder_args"] = "regions", {"feat_dim": 12}
    torch.manual_seed(0)
    return build_model(cfg, vocab_size=vocab_size)


def test_shapes_pixels_encoder_runs_once_per_image():
    model = tiny()
    images = torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8)
    memory = model.encode({"images": images})
    assert memory["att"].shape == (3, 64, 32)  # 32 px / 4 → 8×8 grid
    mem5 = model.expand_memory(memory, 5)
    assert mem5["fc"].shape[0] == 15 and torch.equal(mem5["fc"][5], memory["fc"][1])
    tokens = torch.randint(0, 20, (15, 7))
    logp = model(mem5, tokens)
    assert logp.shape == (15, 7, 20)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(15, 7), atol=1e-5)


def test_gradient_reaches_every_parameter():
    model = tiny()
    model.train()
    memory = model.expand_memory(model.encode({"images": torch.rand(2, 3, 32, 32)}), 2)
    logp = model(memory, torch.randint(0, 20, (4, 6)))
    logp.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_regions_with_padding_mask_ignored():
    model = tiny("regions").eval()
    feats = torch.randn(2, 5, 12)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float32)
    changed = feats.clone()
    changed[0, 3:] = 100.0  # padded regions must not matter
    tokens = torch.randint(0, 20, (2, 4))
    a = model(model.encode({"att_feats": feats, "att_masks": mask}), tokens)
    b = model(model.encode({"att_feats": changed, "att_masks": mask}), tokens)
    assert torch.allclose(a[0], b[0], atol=1e-5)


def test_step_matches_teacher_forcing():
    model = tiny().eval()
    memory = model.encode({"images": torch.rand(2, 3, 32, 32)})
    tokens = torch.randint(0, 20, (2, 5))
    full = model(memory, tokens)
    state = model.init_state(memory)
    for t in range(5):
        logp, state = model.step(memory, tokens[:, t], state)
        assert torch.allclose(logp, full[:, t], atol=1e-5)


def test_greedy_stops_and_pads():
    """Each row stops at its first <eos>; everything after is <pad>; the words before are the argmax path."""
    model = tiny().eval()
    memory = model.encode({"images": torch.rand(4, 3, 32, 32)})
    free = greedy(model, memory, bos=2, eos=-1, pad=0, max_len=6).tolist()  # an <eos> that never comes
    assert all(len(row) == 6 for row in free)
    eos = free[0][-1]  # a word row 0 says: as <eos>, row 0 must stop at its first occurrence
    seqs = greedy(model, memory, bos=2, eos=eos, pad=0, max_len=6).tolist()
    assert seqs[0].index(eos) == free[0].index(eos)
    for row, path in zip(seqs, free, strict=True):
        end = path.index(eos) + 1 if eos in path else len(path)
        assert row[:end] == path[:end] and all(t == 0 for t in row[end:])
