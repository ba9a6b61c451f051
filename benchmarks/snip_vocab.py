"""SNIP's vocabulary at COCO scale: how many words can a SNIP-pruned model still emit?

SNIP (Lee et al. 2019) scores every connection once, at initialisation, by ``|g ⊙ w|`` summed over the saliency batches,
and keeps the globally largest. In the output layer the gradient of word j's row is ``Σ_t (p_j − [j = target_t]) h_t``:
a word that is a target somewhere in the saliency batches gets an O(1) gradient, a word that is not gets only
``p_j ≈ 1/V``. With the embedded dataset's 78 words one batch holds nearly every word; with COCO's (the reference uses a
10,001-word vocabulary and one batch of 15 images × 5 captions) it holds a few hundred.

This script builds a paper-size model (default ``ud-paper`` with V = 10001), draws captions whose words follow a Zipf
law over the vocabulary (COCO's word counts do, roughly: rank r has frequency ∝ 1/r^a; no COCO here, so this is the
stand-in; ``--zipf`` changes a) and random region features, runs our SNIP (``SnipMethod``, both saliencies) with
1, 4 and 16 saliency batches, and reports at each of the paper's sparsities:

- ``words seen``: distinct target words in the saliency batches;
- ``emit``: output rows that keep at least one weight (a word whose row is empty has a constant logit, its bias: the
  model cannot choose it from the image or the context), and how many of those were not seen;
- ``token cover``: the share of the words of 5,000 fresh captions (same law) that the pruned model can still emit;
- ``embed``: embedding rows that keep a weight.

Run: ``python benchmarks/snip_vocab.py [--model ud-paper] [--vocab 10001] [--images 15] [--batches 1,4,16] [--json]``.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from sparsecap_engine.models.registry import build_model, preset
from sparsecap_engine.pruning.criteria import select_global
from sparsecap_engine.pruning.methods import SnipMethod
from sparsecap_engine.pruning.report import output_vocabulary
from sparsecap_engine.training.losses import caption_xe

SPARSITIES = (0.95, 0.975, 0.9875, 0.991)
PAD, BOS, EOS, FIRST_WORD = 0, 2, 3, 4


def zipf_probs(vocab: int, a: float) -> torch.Tensor:
    """P(word of rank r) ∝ 1/r^a over the word ids FIRST_WORD..vocab−1 (id order = frequency rank)."""
    ranks = torch.arange(1, vocab - FIRST_WORD + 1, dtype=torch.float64)
    p = ranks.pow(-a)
    return p / p.sum()


def captions(n: int, probs: torch.Tensor, gen: torch.Generator, max_words: int = 16) -> torch.Tensor:
    """``n`` token rows: BOS, 8–13 Zipf words (COCO captions average ~10.5), EOS, PAD to ``max_words + 2``."""
    rows = torch.full((n, max_words + 2), PAD, dtype=torch.long)
    lengths = torch.randint(8, 14, (n,), generator=gen)
    words = torch.multinomial(probs, n * max_words, replacement=True, generator=gen).view(n, max_words) + FIRST_WORD
    for i, k in enumerate(lengths.tolist()):
        rows[i, 0] = BOS
        rows[i, 1 : k + 1] = words[i, :k]
        rows[i, k + 1] = EOS
    return rows


def embedding_name(model: nn.Module, vocab: int) -> str:
    """Name (as SNIP's masks know it) of the word embedding (V × d)."""
    return next((f"{name}.weight" for name, mod in model.named_modules()
                 if isinstance(mod, nn.Embedding) and mod.num_embeddings == vocab), "")


def run(model_name: str, vocab: int, images: int, per_img: int, batches: list[int], zipf: float,
        seed: int) -> dict:
    def fresh_model() -> nn.Module:  # the same initialisation for every comparison
        torch.manual_seed(seed)
        return build_model(preset(model_name), vocab).train()  # saliency batches run in training mode, as in a run

    model = fresh_model()
    out_name, emb_name = output_vocabulary(model)["layer"], embedding_name(model, vocab)
    feat = model.config.get("encoder_args", {}).get("feat_dim", 2048)
    probs = zipf_probs(vocab, zipf)
    gen = torch.Generator().manual_seed(seed + 1)
    pool = max(batches)
    data = [(torch.randn(images, 36, feat, generator=gen).relu(), captions(images * per_img, probs, gen))
            for _ in range(pool)]
    fresh = captions(5000, probs, gen)
    fresh_words = fresh[(fresh >= FIRST_WORD)]

    def loss_fn(m: nn.Module, i: int) -> torch.Tensor:
        feats, tokens = data[i]
        batch = {"att_feats": feats}
        if model.config.get("name") == "ort":
            xy = torch.rand(images, 36, 2, generator=torch.Generator().manual_seed(i)) * 0.6
            batch["boxes"] = torch.cat([xy, xy + 0.4], dim=-1)
        memory = m.expand_memory(m.encode(batch), per_img)
        return caption_xe(m(memory, tokens[:, :-1]).float(), tokens[:, 1:], PAD)

    rows = []
    for k in batches:
        seen = torch.zeros(vocab, dtype=torch.bool)
        for _, tokens in data[:k]:
            seen[tokens[:, 1:].flatten()] = True
        seen[:FIRST_WORD] = False
        for saliency in ("abs", "signed"):
            method = SnipMethod(0.95, snip_batches=k, snip_saliency=saliency, total_steps=1)
            model = fresh_model()
            method.attach(model)
            method.loss_fn = loss_fn
            scores = method.saliency()
            for s in SPARSITIES:
                masks = select_global(scores, s).masks
                emit = masks[out_name].any(dim=1).cpu()
                emit[:FIRST_WORD] = False
                embed = masks[emb_name].any(dim=1).cpu() if emb_name in masks else None
                rows.append({
                    "batches": k, "saliency": saliency, "sparsity": s, "words_seen": int(seen.sum()),
                    "emit": int(emit.sum()), "emit_unseen": int((emit & ~seen).sum()),
                    "token_cover": float(emit[fresh_words].float().mean()),
                    "embed_rows": int(embed.sum()) if embed is not None else None,
                    "output_share": float(masks[out_name].sum()) / sum(float(v.sum()) for v in masks.values()),
                })
    words = vocab - FIRST_WORD
    return {"model": model_name, "vocab": vocab, "words": words, "images_per_batch": images,
            "captions_per_image": per_img, "zipf": zipf, "prunable": sum(int(v.numel()) for v in scores.values()),
            "output": out_name, "embedding": emb_name, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="ud-paper", help="a preset over region features (ud-paper, ort-paper, ...)")
    ap.add_argument("--vocab", type=int, default=10001)
    ap.add_argument("--images", type=int, default=15, help="images per saliency batch (the reference: 15)")
    ap.add_argument("--per-img", type=int, default=5)
    ap.add_argument("--batches", default="1,4,16", help="saliency batch counts to compare")
    ap.add_argument("--zipf", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args.model, args.vocab, args.images, args.per_img, [int(b) for b in args.batches.split(",")],
              args.zipf, args.seed)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print(f"{res['model']}, V = {res['vocab']} ({res['words']} words, Zipf a = {res['zipf']}), "
          f"{res['prunable']:,} prunable weights; saliency batches of {res['images_per_batch']} images × "
          f"{res['captions_per_image']} captions; output layer {res['output']}")
    print(f"{'batches':>7} {'saliency':>8} {'sparsity':>8} {'seen':>6} {'emit':>6} {'unseen':>6} {'cover':>6} "
          f"{'embed':>6} {'out share':>9}")
    for r in res["rows"]:
        print(f"{r['batches']:>7} {r['saliency']:>8} {r['sparsity']:>8.4f} {r['words_seen']:>6} {r['emit']:>6} "
              f"{r['emit_unseen']:>6} {r['token_cover']:>6.1%} {str(r['embed_rows'] or '-'):>6} "
              f"{r['output_share']:>9.1%}")


if __name__ == "__main__":
    main()
