"""SCST: options, reward (CIDEr-D with training df + BLEU), baselines, loss, objective, fixed masks, CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecap_engine.config import RunConfig
from sparsecap_engine.errors import UsageError
from sparsecap_engine.metrics.bleu import bleu_scores
from sparsecap_engine.metrics.cider import CiderD
from sparsecap_engine.recipes.scst import fixed_mask_hooks, scst_config
from sparsecap_engine.runs import RunDir
from sparsecap_engine.text.vocab import Vocab
from sparsecap_engine.training.scst import (
    DF_FILE,
    CaptionReward,
    ScstOptions,
    leave_one_out,
    reward_loss,
    scst_objective,
)

REFS = [
    ["a red circle above a blue square", "a blue square under a red circle"],
    ["a small green triangle", "a green triangle on the left"],
    ["two yellow squares", "a pair of yellow squares"],
]


def test_options_are_checked():
    ScstOptions(source="x").check()
    ScstOptions(source="x", samples=2, baseline="mean", sample="beam", bleu_weights=[0, 0, 0, 1]).check()
    with pytest.raises(UsageError, match="--scst-samples >= 2"):
        ScstOptions(source="x", samples=1, baseline="mean").check()
    for bad in (
        ScstOptions(),
        ScstOptions(source="x", sample="gumbel"),
        ScstOptions(source="x", baseline="zero"),
        ScstOptions(source="x", samples=0),
        ScstOptions(source="x", cider_weight=0.0),
        ScstOptions(source="x", cider_weight=-1.0),
        ScstOptions(source="x", bleu_weights=[0, 0, 0, 0, 1]),
    ):
        with pytest.raises(UsageError):
            bad.check()
    with pytest.raises(UsageError, match="unknown key"):
        ScstOptions.from_dict({"source": "x", "smaples": 3})


def test_scst_config_is_checked_and_drops_pruning():
    base = RunConfig()
    base.prune = {"method": "magnitude"}
    base.train.keep_steps = [5]
    cfg = scst_config(base, {"source": "runs/x", "samples": 4})
    assert cfg.scst["samples"] == 4 and cfg.prune == {} and cfg.train.keep_steps == []
    back = RunConfig.from_dict(cfg.to_dict())
    assert back.scst == cfg.scst
    with pytest.raises(UsageError):
        scst_config(base, {"source": "runs/x", "samples": 1, "baseline": "mean"})


def test_leave_one_out_baseline():
    r = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    assert np.allclose(leave_one_out(r), [[2.5, 2.0, 1.5], [3.0, 3.0, 0.0]])
    with pytest.raises(UsageError):
        leave_one_out(np.ones((2, 1)))


def test_reward_is_weighted_cider_d_with_training_df_plus_bleu(tmp_path: Path):
    run = RunDir(tmp_path)
    hyps = ["a red circle above a square", "a green triangle", "", "two yellow squares", "a red circle"]
    images = [0, 1, 1, 2, 0]
    cider_only = CaptionReward.for_run(run, REFS, ScstOptions(source="x"))
    assert (tmp_path / DF_FILE).is_file()
    expect = CiderD.from_refs(dict(enumerate(REFS))).scores(hyps, images, dict(enumerate(REFS)))
    assert np.allclose(cider_only(hyps, images), expect)
    assert cider_only(hyps, images)[2] == 0.0  # an empty caption earns nothing

    mixed = CaptionReward.for_run(run, REFS, ScstOptions(source="x", cider_weight=0.5, bleu_weights=[0, 0, 0, 2]))
    for h, (hyp, img) in enumerate(zip(hyps, images, strict=True)):
        bleu4 = bleu_scores({0: REFS[img]}, {0: hyp})[1][3][0]
        assert mixed(hyps, images)[h] == pytest.approx(0.5 * expect[h] + 2 * bleu4, abs=1e-9)
    reloaded = CaptionReward.for_run(run, [["unrelated"]] * 3, ScstOptions(source="x"))
    assert reloaded.cider.ref_len == 3 and reloaded.cider.document_frequency == cider_only.cider.document_frequency


def test_reward_loss_pushes_up_better_than_baseline_samples():
    logits = torch.zeros(2, 3, 4, requires_grad=True)
    tokens = torch.tensor([[0, 1, 2], [1, 1, 0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])

    def token_logp() -> torch.Tensor:
        return torch.log_softmax(logits, -1).gather(2, tokens.unsqueeze(2)).squeeze(2)

    advantage = torch.tensor([1.0, -1.0])
    logp = token_logp()
    loss = reward_loss(logp, mask, advantage)
    manual = -(logp.detach() * mask * advantage[:, None]).sum() / mask.sum()  # −Σ log p · m · A / Σ m
    assert loss.item() == pytest.approx(manual.item())
    assert reward_loss(logp.detach(), mask, torch.zeros(2)).item() == 0.0
    loss.backward()
    with torch.no_grad():
        logits -= 1.0 * logits.grad
        after = token_logp()
    seq = lambda lp: (lp * mask).sum(1)  # noqa: E731
    assert seq(after)[0] > seq(logp.detach())[0] and seq(after)[1] < seq(logp.detach())[1]


class _Data:
    """The two methods of a ``CaptionSet`` the objective uses."""

    def __init__(self, n: int, size: int = 16):
        self.images = torch.randint(0, 255, (n, 3, size, size), dtype=torch.uint8)

    def image_batch(self, index):
        return {"images": self.images[torch.as_tensor(index)]}


def _tiny_model(vocab_size: int):
    from sparsecap_engine.models.registry import build_model, preset

    cfg = preset("ud-small")
    cfg.update(rnn_size=24, input_encoding_size=12, att_hid_size=12, drop_prob_lm=0.1, encoder_args={"channels": [8]})
    torch.manual_seed(0)
    return build_model(cfg, vocab_size=vocab_size).train()


@pytest.mark.parametrize(("sampler", "baseline"), [("random", "greedy"), ("random", "mean"), ("beam", "greedy"),
                                                   ("beam", "mean")])
def test_objective_gives_a_finite_loss_with_gradients(tmp_path: Path, sampler: str, baseline: str):
    words = sorted({w for caps in REFS for c in caps for w in c.split()})
    vocab = Vocab(words)
    opts = ScstOptions(source="x", samples=3, sample=sampler, baseline=baseline)
    reward = CaptionReward.for_run(RunDir(tmp_path), REFS, opts)
    model = _tiny_model(len(vocab))
    objective = scst_objective(opts, vocab, reward, max_len=6, seed=1)
    loss, info = objective(model, _Data(3), [0, 1, 2], step=0)
    assert torch.isfinite(loss) and model.training
    assert info["items"] == 9 and set(info) == {"items", "reward", "baseline"}
    loss.backward()
    grads = [p.grad for p in model.decoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_fixed_mask_hooks_only_for_pruned_checkpoints(tmp_path: Path):
    from sparsecap_engine.checkpoint.masks_file import masks_path, save_masks
    from sparsecap_engine.checkpoint.source import Source

    ckpt = tmp_path / "best.safetensors"
    ckpt.write_bytes(b"")
    src = Source(None, ckpt, {}, {})
    assert fixed_mask_hooks(src) is None and src.masks() is None
    model = _tiny_model(10)
    masks = {"decoder.logit.weight": torch.rand_like(model.decoder.logit.weight) > 0.5}
    save_masks(masks_path(ckpt), masks)
    assert torch.equal(src.masks()["decoder.logit.weight"], masks["decoder.logit.weight"])
    hooks = fixed_mask_hooks(src)
    assert hooks is not None and getattr(hooks, "name", "") == "fixed"
    assert hooks.target == pytest.approx(1 - masks["decoder.logit.weight"].float().mean().item())


# ----------------------------------------------------------------------------------------------------- end to end
EXE = str(Path(sys.executable).parent / "sparsecap")
TINY = ["--set", "data.image_size=32", "--set", "model.rnn_size=32", "--set", "model.input_encoding_size=16",
        "--set", "model.att_hid_size=16", "--set", "train.val_images=6", "--set", "train.num_threads=1",
        "--set", 'model.encoder_args={"channels": [8, 16]}']


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_scst_stage_through_the_cli(tmp_path: Path):
    from sparsecap_engine.data.synthetic import generate_synthetic

    dataset = generate_synthetic(tmp_path / "data", images=60, size=32)
    runs = tmp_path / "runs"
    res = _cli("train", "--dataset", str(dataset), "--runs-root", str(runs), "--name", "xe", "--steps", "30",
               "--batch-size", "8", "--val-every", "30", "--quiet", *TINY)
    assert res.returncode == 0, res.stderr

    bad = _cli("train", "--scst", "--from", str(runs / "xe"), "--runs-root", str(runs), "--name", "bad",
               "--scst-samples", "1", "--scst-baseline", "mean")
    assert bad.returncode == 2 and "--scst-samples >= 2" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (runs / "bad").exists()

    res = _cli("train", "--scst", "--from", str(runs / "xe"), "--runs-root", str(runs), "--name", "scst",
               "--steps", "4", "--val-every", "2", "--batch-size", "4", "--scst-samples", "3",
               "--scst-baseline", "mean", "--bleu-weight", "0,0,0,1", "--quiet", "--set", "train.log_every=2")
    assert res.returncode == 0, res.stderr
    run = runs / "scst"
    cfg = RunDir.open(run).load_config()
    assert cfg.scst["baseline"] == "mean" and cfg.scst["bleu_weights"] == [0, 0, 0, 1]
    assert cfg.optim.schedule == "constant" and cfg.optim.lr == 5e-5 and cfg.train.steps == 4
    assert (run / DF_FILE).is_file() and (run / "checkpoints" / "best.safetensors").is_file()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    train_events = [e for e in events if e["kind"] == "train"]
    assert train_events and all("reward" in e and "baseline" in e for e in train_events)
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "completed"

    res = _cli("eval", str(run), "--split", "val", "--beam", "2", "--metrics", "bleu,cider", "--json", "--quiet",
               "--per-image", str(tmp_path / "per_image.csv"))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["decoding"] == "beam2" and Path(out["out_dir"]).name == "val-beam2"
    assert (run / "eval" / "val-beam2" / "captions.json").is_file()
    header = (tmp_path / "per_image.csv").read_text().splitlines()[0]
    assert header.startswith("image_id,caption,Bleu_1") and "CIDEr" in header


@pytest.mark.slow
def test_scst_keeps_the_masks_of_a_pruned_source(tmp_path: Path):
    pytest.importorskip("sparsecap_engine.checkpoint.pruned")
    from sparsecap_engine.checkpoint.model_io import load_model, read_state
    from sparsecap_engine.checkpoint.pruned import save_pruned
    from sparsecap_engine.data.synthetic import generate_synthetic
    from sparsecap_engine.pruning.masks import attach

    dataset = generate_synthetic(tmp_path / "data", images=60, size=32)
    runs = tmp_path / "runs"
    res = _cli("train", "--dataset", str(dataset), "--runs-root", str(runs), "--name", "xe", "--steps", "10",
               "--batch-size", "8", "--val-every", "10", "--quiet", *TINY)
    assert res.returncode == 0, res.stderr
    model, vocab, meta = load_model(runs / "xe" / "checkpoints" / "best.safetensors")
    mask_set = attach(model, "hard", names=["decoder.logit.weight"])
    w = model.decoder.logit.weight
    masks = {"decoder.logit.weight": w.abs() > w.abs().median()}
    mask_set.set(masks)
    pruned = runs / "xe" / "checkpoints" / "pruned.safetensors"
    save_pruned(pruned, model, vocab, masks, {"method": "magnitude", "sparsity": 0.5}, step=meta["step"])

    res = _cli("train", "--scst", "--from", str(pruned), "--runs-root", str(runs), "--name", "scst", "--steps", "3",
               "--val-every", "3", "--batch-size", "4", "--scst-samples", "2", "--lr", "1e-2", "--quiet")
    assert res.returncode == 0, res.stderr
    state, _ = read_state(runs / "scst" / "checkpoints" / "last.safetensors")
    before, _ = read_state(pruned)
    kept = masks["decoder.logit.weight"]
    assert torch.all(state["decoder.logit.weight"][~kept] == 0)
    assert not torch.equal(state["decoder.logit.weight"][kept], before["decoder.logit.weight"][kept])


class _Regions:
    def __init__(self, n: int):
        g = torch.Generator().manual_seed(2)
        self.feats, self.boxes = torch.randn(n, 5, 12, generator=g), torch.rand(n, 5, 4, generator=g).sort(-1).values

    def image_batch(self, index):
        i = torch.as_tensor(index)
        return {"att_feats": self.feats[i], "att_masks": torch.ones(len(index), 5), "boxes": self.boxes[i]}


@pytest.mark.parametrize("sampler", ["random", "beam"])
def test_objective_with_shared_layer_ort_and_radix_tokens(tmp_path: Path, sampler: str):
    from sparsecap_engine.decoding.beam import beam_search
    from sparsecap_engine.decoding.constraints import Constraints
    from sparsecap_engine.models.registry import build_model
    from sparsecap_engine.text.radix import RadixTokenizer

    words = Vocab(sorted({w for caps in REFS for c in caps for w in c.split()}))
    tok = RadixTokenizer(words, base=5)
    cfg = {"name": "ort", "d_model": 16, "dim_feedforward": 32, "num_layers": 2, "num_heads": 2,
           "share_layers": [0, 0], "encoder": "regions", "encoder_args": {"feat_dim": 12}}
    torch.manual_seed(0)
    model = build_model(cfg, vocab_size=len(tok)).train()
    opts = ScstOptions(source="x", samples=2, sample=sampler, baseline="mean")
    objective = scst_objective(opts, tok, CaptionReward.for_run(RunDir(tmp_path), REFS, opts), max_len=9, seed=3)
    loss, info = objective(model, _Regions(3), [0, 1, 2], step=0)
    loss.backward()
    assert torch.isfinite(loss) and info["items"] == 6
    model.eval()
    with torch.no_grad():
        memory = model.encode(_Regions(3).image_batch([0, 1, 2]))
        res = beam_search(model, memory, tok.bos_id, tok.eos_id, tok.pad_id, 9, 3, n_best=3,
                          constraints=Constraints.for_vocab(tok))
    for row in res.tokens.flatten(0, 1).tolist():
        if tok.eos_id in row:
            assert row.index(tok.eos_id) % tok.digits == 0


@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_objective_learns_to_earn_its_reward(baseline: str):
    """The policy gradient's sign and baselines, end to end: with a reward for saying "red", a few Adam steps on the
    objective make "red" more frequent in samples (a flipped advantage makes it vanish instead)."""
    words = sorted({w for caps in REFS for c in caps for w in c.split()})
    vocab = Vocab(words)
    opts = ScstOptions(source="x", samples=4, sample="random", baseline=baseline)

    def reward(captions, images):
        return np.array([float("red" in c.split()) for c in captions])

    model = _tiny_model(len(vocab))
    objective = scst_objective(opts, vocab, reward, max_len=6, seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    data, index, rates = _Data(3), [0, 1, 2], []
    for step in range(40):
        loss, info = objective(model, data, index, step)
        rates.append(info["reward"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert np.mean(rates[:5]) < 0.7 and np.mean(rates[-10:]) >= 0.95, rates
