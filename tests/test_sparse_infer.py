import copy

import pytest
import torch
from torch import nn

from sparsecap_engine.checkpoint.sparse_infer import (
    SparseEmbedding,
    SparseLinear,
    SparseLSTMCell,
    pruned_sparsity,
    sparsify,
    want_sparse,
)
from sparsecap_engine.decoding.api import DecodeOptions, decode_memory, decode_nbest
from sparsecap_engine.errors import UsageError
from tests.sparse_fixtures import pruned_ort, pruned_updown, vocab_for
from tests.test_models_transformer import region_batch

CASES = {
    "updown": (lambda: pruned_updown(0.9), lambda: {"images": torch.rand(2, 3, 32, 32)}),
    "ort": (lambda: pruned_ort(0.9), lambda: region_batch(2)),
    "acort": (lambda: pruned_ort(0.9, share_att="kv", share_layers=[0, 0, 1, 1]), lambda: region_batch(2)),
    "ort-qk": (lambda: pruned_ort(0.9, share_att="qk"), lambda: region_batch(2)),  # fused K must not be V
}


def _pair(case: str):
    make, batch = CASES[case]
    dense = make()
    sparse = copy.deepcopy(dense)
    report = sparsify(sparse, min_sparsity=0.5)
    return dense, sparse, batch(), report


@pytest.mark.parametrize("case", list(CASES))
def test_layers_swapped_interface_unchanged(case: str):
    dense, sparse, _, report = _pair(case)
    assert type(sparse) is type(dense) and type(sparse.decoder) is type(dense.decoder)
    kinds = {type(m) for m in sparse.modules()}
    assert SparseLinear in kinds and SparseEmbedding in kinds
    assert not any(isinstance(m, (nn.Linear, nn.Embedding, nn.LSTMCell)) for m in sparse.decoder.modules())
    if case == "updown":
        assert isinstance(sparse.decoder.core.att_lstm, SparseLSTMCell)
        assert isinstance(sparse.decoder.logit, SparseLinear)
    else:
        assert isinstance(sparse.decoder.generator, SparseLinear)
    assert report.converted and not report.skipped
    # a clean module swap: same module tree except converted layers and the declared qkv_proj slots, no methods
    # patched onto instances, LayerNorm and Dropout untouched
    before, after = dict(dense.named_modules()), dict(sparse.named_modules())
    changed = {(type(before[n]).__name__, type(m).__name__) for n, m in after.items()
               if n in before and type(before[n]) is not type(m)}
    allowed = {("Linear", "SparseLinear"), ("Embedding", "SparseEmbedding"), ("LSTMCell", "SparseLSTMCell")}
    assert changed <= allowed, changed
    extra = set(after) - set(before)
    assert all(n.endswith("self_attn.qkv_proj") for n in extra), extra
    assert (len(extra) > 0) == (case != "updown")  # every self-attention of the Transformers fused
    assert not any(callable(v) and hasattr(v, "__self__") for m in sparse.modules() for v in vars(m).values())


@torch.no_grad()
def test_eval_attention_kernel_equals_the_reference_formula():
    """In eval, ``attend`` uses one fused kernel: the same values as ``attention`` with masks and an additive bias,
    including a query whose keys are all masked (uniform, not NaN)."""
    from sparsecap_engine.models.transformer import MultiHeadAttention, attention

    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, dropout=0.3).eval()
    q, k, v = (torch.randn(2, 4, 5, 4) for _ in range(3))
    mask = torch.rand(2, 1, 5, 5) > 0.3
    mask[0, 0, 2] = False  # every key masked for one query
    bias = torch.randn(2, 4, 5, 5)
    for m, b in ((None, None), (mask, None), (None, bias), (mask, bias)):
        ref = attention(q, k, v, m, b, nn.Identity())
        want = mha.out_proj(ref.transpose(1, 2).reshape(2, 5, 16))
        got = mha.attend(q, k, v, m, b)
        assert torch.allclose(got, want, atol=1e-5) and torch.isfinite(got).all()
    mha.train()  # with dropout in training the reference path runs: outputs vary with the dropout draw
    assert not torch.equal(mha.attend(q, k, v), mha.attend(q, k, v))


@pytest.mark.parametrize("case", list(CASES))
@torch.no_grad()
def test_logprobs_match_dense(case: str):
    dense, sparse, batch, _ = _pair(case)
    md, ms = dense.encode(batch), sparse.encode(batch)
    for k in md:
        assert torch.allclose(md[k], ms[k], atol=1e-4), k
    sd, ss = dense.init_state(md), sparse.init_state(ms)
    tokens = torch.full((2,), 2, dtype=torch.long)
    for _ in range(5):
        ld, sd = dense.step(md, tokens, sd)
        ls, ss = sparse.step(ms, tokens, ss)
        assert (ld - ls).abs().max() < 1e-4
        tokens = ld.argmax(-1)
    seq = torch.randint(4, dense.config["vocab_size"], (2, 6))
    assert (dense(md, seq) - sparse(ms, seq)).abs().max() < 1e-4


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("opts", [DecodeOptions(max_len=8), DecodeOptions(method="beam", beam_size=3, max_len=8,
                                                                           n_best=3)])
def test_greedy_and_beam_match_dense(case: str, opts: DecodeOptions):
    dense, sparse, batch, _ = _pair(case)
    vocab = vocab_for(dense)
    with torch.no_grad():
        md, ms = dense.encode(batch), sparse.encode(batch)
        assert torch.equal(decode_memory(dense, md, vocab, opts), decode_memory(sparse, ms, vocab, opts))
        if opts.method == "beam":
            sd, scd = decode_nbest(dense, md, vocab, opts)
            ss, scs = decode_nbest(sparse, ms, vocab, opts)
            assert torch.equal(sd, ss) and torch.allclose(scd, scs, atol=1e-4)


def test_threshold_leaves_dense_layers_alone():
    model = pruned_updown(0.9)
    with torch.no_grad():
        model.decoder.logit.weight.normal_()  # unpruned output layer
    report = sparsify(model, min_sparsity=0.7)
    assert isinstance(model.decoder.logit, nn.Linear) and "decoder.logit" in report.skipped


def test_want_sparse_modes():
    sparse_model, dense_model = pruned_updown(0.9), pruned_updown(0.3)
    assert pruned_sparsity(sparse_model) > 0.85
    assert want_sparse("auto", sparse_model, "cpu") and not want_sparse("auto", dense_model, "cpu")
    assert not want_sparse("auto", sparse_model, "cuda")
    assert want_sparse("on", dense_model, "cpu") and not want_sparse("off", sparse_model, "cpu")
    with pytest.raises(UsageError):
        want_sparse("maybe", sparse_model, "cpu")
    with pytest.raises(UsageError):
        want_sparse("on", sparse_model, "cuda")


def test_a_layer_dense_enough_for_csr_to_lose_on_big_batches_uses_its_dense_weight_there(monkeypatch):
    """Per-layer fallback: a 70 % sparse layer multiplies one row by CSR and 192 rows (eval's 64 images × beam 3) by
    its dense weight; a 99 % sparse one always by CSR and keeps no dense copy. Results agree either way."""
    import torch.nn.functional as F

    from sparsecap_engine.checkpoint import sparse_infer as si

    assert si.csr_pays(0.3, 1) and si.csr_pays(0.3, 16) and not si.csr_pays(0.3, 64)
    assert si.csr_pays(0.2, 64) and not si.csr_pays(0.2, 192) and si.csr_pays(0.01, 10**6)
    torch.manual_seed(0)
    loose, tight = nn.Linear(64, 48), nn.Linear(64, 48)
    with torch.no_grad():
        loose.weight.mul_(torch.rand_like(loose.weight) >= 0.7)
        tight.weight.mul_(torch.rand_like(tight.weight) >= 0.99)
    loose_s, tight_s = SparseLinear(copy.deepcopy(loose)), SparseLinear(copy.deepcopy(tight))
    assert loose_s.product.dense is not None and tight_s.product.dense is None
    calls: list[str] = []
    real_csr, real_linear = si._csr_matmul, F.linear
    monkeypatch.setattr(si, "_csr_matmul", lambda *a: calls.append("csr") or real_csr(*a))
    monkeypatch.setattr(si.F, "linear", lambda *a, **k: calls.append("dense") or real_linear(*a, **k))
    for rows, layer, dense, want in ((1, loose_s, loose, "csr"), (192, loose_s, loose, "dense"),
                                     (192, tight_s, tight, "csr")):
        x = torch.randn(rows, 64)
        expected = dense(x)
        calls.clear()
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
        assert calls == [want], (rows, calls)
    # the LSTM cell's two products choose the same way
    cell = nn.LSTMCell(32, 40)
    with torch.no_grad():
        cell.weight_ih.mul_(torch.rand_like(cell.weight_ih) >= 0.7)
        cell.weight_hh.mul_(torch.rand_like(cell.weight_hh) >= 0.99)
    sparse_cell = SparseLSTMCell(copy.deepcopy(cell), 0.5)
    x, h = torch.randn(192, 32), (torch.randn(192, 40), torch.randn(192, 40))
    expected = cell(x, h)
    calls.clear()
    for got, want in zip(sparse_cell(x, h), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert calls == ["dense", "csr"]


@pytest.mark.parametrize(("shape", "sparsity"), [((64, 48), 0.99), ((7, 5), 0.5), ((3, 4), 1.0), ((5, 3), 0.0)])
def test_to_csr_equals_torch_conversion(shape: tuple[int, int], sparsity: float):
    """The hand-built CSR (nonzero + row counts, int32 indices) is torch's own conversion, index for index, and
    multiplies as the dense weight does; an empty row, an empty matrix and a full one included."""
    from sparsecap_engine.checkpoint.sparse_infer import to_csr

    g = torch.Generator().manual_seed(1)
    w = torch.randn(shape, generator=g)
    w[torch.rand(shape, generator=g) < sparsity] = 0
    w[0] = 0  # an empty row
    csr, ref = to_csr(w), w.to_sparse_csr()
    assert csr.crow_indices().dtype == torch.int32 and csr.col_indices().dtype == torch.int32
    assert torch.equal(csr.crow_indices().long(), ref.crow_indices())
    assert torch.equal(csr.col_indices().long(), ref.col_indices())
    assert torch.equal(csr.values(), ref.values()) and torch.equal(csr.to_dense(), w)
    v = torch.randn(shape[1], generator=g)
    assert torch.allclose(torch.mv(csr, v), w @ v, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(48,), (1, 48), (2, 48), (3, 48), (4, 48), (40, 48), (2, 5, 48), (1, 1, 48)])
def test_csr_product_every_row_count_is_the_dense_product_row_major(shape: tuple[int, ...], bias: bool):
    """One vector (the decoding step's fast path), a few rows (one matrix–vector product each), many rows (CSR × dense):
    each equals ``F.linear``, keeps the input's leading shape, and comes out row-major (attention heads cut from a
    strided result would miss the fused attention kernel)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    lin = nn.Linear(48, 40, bias=bias)
    with torch.no_grad():
        lin.weight.mul_(torch.rand_like(lin.weight) >= 0.9)
    sparse = SparseLinear(copy.deepcopy(lin))
    x = torch.randn(shape)
    got = sparse(x)
    torch.testing.assert_close(got, F.linear(x, lin.weight, lin.bias), rtol=1e-5, atol=1e-5)
    assert got.shape == (*shape[:-1], 40) and got.is_contiguous()


@pytest.mark.parametrize("case", ["ort", "acort", "ort-qk"])
@pytest.mark.parametrize("rows", [1, 2])
def test_sparse_decoding_pass_equals_its_teacher_forcing(case: str, rows: int):
    """On the CSR twins a decoding pass takes each one's bound matrix–vector product for one vector, one product per
    row for 2 rows, and teacher forcing the CSR × dense product of many rows: the same log-probs every way."""
    _, sparse, batch, _ = _pair(case)
    batch = {k: v[:rows] for k, v in batch.items()}
    tokens = torch.randint(4, 20, (rows, 5), generator=torch.Generator().manual_seed(3))
    tokens[:, 0] = 2
    with torch.no_grad():
        memory = sparse.encode(batch)
        full = sparse(memory, tokens)
        step = sparse.stepper()
        state = sparse.init_state(memory)
        for t in range(tokens.shape[1]):
            logp, state = step(memory, tokens[:, t], state)
            assert torch.allclose(logp, full[:, t], atol=1e-5), (t, (logp - full[:, t]).abs().max())
