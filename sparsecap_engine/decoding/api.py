"""One entry point that turns a batch of encoder inputs into caption strings with the chosen decoding options."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor

from sparsecap_engine.decoding.beam import beam_search, length_penalty_fn
from sparsecap_engine.decoding.constraints import Constraints
from sparsecap_engine.decoding.greedy import filter_logprobs, greedy, sample
from sparsecap_engine.errors import UsageError
from sparsecap_engine.models.base import CaptionModel, Memory
from sparsecap_engine.progress import Progress, no_progress
from sparsecap_engine.text.vocab import Vocab

DECODING_METHODS = ("greedy", "sample", "beam")
#: longest caption in tokens, most captions per image: beyond, the decoders' buffers alone take gigabytes
MAX_LEN, MAX_N_BEST = 1000, 1000


@dataclass
class DecodeOptions:
    """How to decode.

    ``method``: greedy | sample | beam (beam with ``beam_size`` 1 is greedy). ``max_len`` counts tokens (for radix
    tokenizers, digits), ``min_len`` words. Sampling: ``temperature``, ``top_k`` (0 = off), ``top_p`` (1 = off),
    ``seed``. Beam: ``length_penalty`` (none | wu_α | avg). Any method: ``block_ngram`` (0 = off),
    ``bad_endings`` (suppress ``<eos>`` after a, the, of, …). ``n_best``: captions per image (beam, sample).
    """

    method: str = "greedy"
    beam_size: int = 1
    max_len: int = 20
    temperature: float = 1.0
    seed: int = 0
    top_k: int = 0
    top_p: float = 1.0
    length_penalty: str = ""
    block_ngram: int = 0
    min_len: int = 0
    bad_endings: bool = False
    n_best: int = 1

    def check(self) -> DecodeOptions:
        """Raise ``UsageError`` on values that cannot work; returns self."""
        if self.method not in DECODING_METHODS and self.method not in EXTRA_DECODERS:
            raise UsageError(f"unknown decoding method {self.method!r}; choose from {', '.join(DECODING_METHODS)}")
        if self.beam_size < 1:
            raise UsageError(f"--beam must be at least 1 (got {self.beam_size})")
        if self.max_len < 1 or self.min_len < 0 or self.block_ngram < 0:
            raise UsageError("--max-len must be >= 1, --min-len and --block-ngram >= 0")
        if self.max_len > MAX_LEN:
            raise UsageError(f"--max-len must be at most {MAX_LEN} tokens (got {self.max_len})")
        if self.min_len > self.max_len:
            raise UsageError(f"--min-len {self.min_len} is longer than --max-len {self.max_len}")
        if self.n_best > MAX_N_BEST:
            raise UsageError(f"--n-best must be at most {MAX_N_BEST} (got {self.n_best})")
        if not -(2**63) <= self.seed < 2**64:
            raise UsageError(f"--seed must fit in 64 bits (got {self.seed})")
        if self.n_best < 1 or (self.method == "beam" and self.n_best > self.beam_size):
            raise UsageError(f"--n-best must be between 1 and the beam size (got {self.n_best}, beam {self.beam_size})")
        if self.method == "greedy" and self.n_best > 1:
            raise UsageError("--n-best > 1 needs --beam K or --sample")
        if self.length_penalty and self.method != "beam":
            raise UsageError("--length-penalty applies to beam search (--beam K > 1)")
        length_penalty_fn(self.length_penalty)
        if self.method == "sample":
            filter_logprobs(torch.zeros(1, 2), self.temperature, self.top_k, self.top_p)
        elif self.top_k or self.top_p != 1.0 or self.temperature != 1.0:
            raise UsageError("--temperature, --top-k and --top-p apply to sampling (--sample)")
        return self

    @property
    def effective_method(self) -> str:
        return "greedy" if self.method == "beam" and self.beam_size <= 1 else self.method

    def to_dict(self) -> dict:
        return asdict(self)


def decode_tag(opts: DecodeOptions) -> str:
    """A short name of the decoding for folder names: ``beam1`` (greedy), ``beam3``, ``sample-t0.7-top5-seed0``, with
    ``-wu0.9``/``-avg``, ``-block3``, ``-min4``, ``-nobad`` suffixes for the options that change the captions."""
    method = opts.effective_method
    if method == "sample":
        tag = "sample"
        tag += f"-t{opts.temperature:g}" if opts.temperature != 1.0 else ""
        tag += f"-top{opts.top_k}" if opts.top_k else ""
        tag += f"-p{opts.top_p:g}" if opts.top_p < 1.0 else ""
        tag += f"-seed{opts.seed}"
    elif method in ("greedy", "beam"):
        tag = f"beam{max(1, opts.beam_size) if method == 'beam' else 1}"
    else:
        tag = method
    lp = (opts.length_penalty or "").strip().lower().replace("_", "")
    tag += f"-{lp}" if lp and lp != "none" and method == "beam" else ""
    tag += f"-block{opts.block_ngram}" if opts.block_ngram else ""
    tag += f"-min{opts.min_len}" if opts.min_len else ""
    tag += "-nobad" if opts.bad_endings else ""
    return tag


#: extra decoders by method name: (model, memory, vocab, options) → (B, T) ids
EXTRA_DECODERS: dict[str, Callable[[CaptionModel, Memory, Vocab, DecodeOptions], Tensor]] = {}


def constraints_for(vocab: Vocab, opts: DecodeOptions) -> Constraints:
    return Constraints.for_vocab(vocab, opts.min_len, opts.block_ngram, opts.bad_endings)


def _generator(memory: Memory, seed: int) -> torch.Generator:
    return torch.Generator(device=next(iter(memory.values())).device).manual_seed(seed)


def fit_vocab(opts: DecodeOptions, vocab: Vocab) -> DecodeOptions:
    """A beam (and n-best) no wider than the words a caption can continue with: a wider beam only holds
    impossible hypotheses (``--beam 500`` on a 76-word vocabulary used to print an empty caption)."""
    words = max(1, len(vocab) - 2)  # <bos> and <pad> never continue a caption
    if opts.method != "beam" or opts.beam_size <= words:
        return opts
    return replace(opts, beam_size=words, n_best=min(opts.n_best, words))


def decode_nbest(model: CaptionModel, memory: Memory, vocab: Vocab, opts: DecodeOptions) -> tuple[Tensor, Tensor]:
    """(B, n, T) ids and (B, n) scores of the ``opts.n_best`` best captions per image, best first.

    Scores: beam → the length-penalised log-prob; sample → the summed log-prob of each of n samples; greedy → its
    summed log-prob (n = 1).
    """
    opts = fit_vocab(opts, vocab)
    ids = dict(bos=vocab.bos_id, eos=vocab.eos_id, pad=vocab.pad_id, max_len=opts.max_len)
    rules = constraints_for(vocab, opts)
    method = opts.effective_method
    with torch.no_grad():
        if method == "beam":
            res = beam_search(model, memory, beam_size=opts.beam_size, n_best=opts.n_best,
                              length_penalty=opts.length_penalty, constraints=rules, **ids)
            return res.tokens, res.scores
        if method in ("greedy", "sample"):
            n = opts.n_best if method == "sample" else 1
            mem = model.expand_memory(memory, n)
            if method == "greedy":
                seqs = greedy(model, mem, constraints=rules, **ids)
                logp = _sequence_logprob(model, mem, seqs, vocab)
            else:
                seqs, logps = sample(model, mem, temperature=opts.temperature, generator=_generator(memory, opts.seed),
                                     top_k=opts.top_k, top_p=opts.top_p, constraints=rules, **ids)
                logp = logps.sum(1)
            b = seqs.shape[0] // n
            seqs, logp = seqs.reshape(b, n, -1), logp.reshape(b, n)
            order = logp.argsort(dim=1, descending=True)
            return seqs.gather(1, order[..., None].expand_as(seqs)), logp.gather(1, order)
    if method in EXTRA_DECODERS:
        seqs = EXTRA_DECODERS[method](model, memory, vocab, opts)
        return seqs.unsqueeze(1), torch.zeros(seqs.shape[0], 1)
    raise UsageError(f"unknown decoding method {opts.method!r}; choose from {', '.join(DECODING_METHODS)}")


def _sequence_logprob(model: CaptionModel, memory: Memory, seqs: Tensor, vocab: Vocab) -> Tensor:
    """Summed log-prob of each row of ``seqs`` (ids after ``<bos>``, pad after ``<eos>``) by teacher forcing."""
    bos = torch.full((seqs.shape[0], 1), vocab.bos_id, dtype=torch.long, device=seqs.device)
    logp = model(memory, torch.cat([bos, seqs[:, :-1]], 1)).float()
    chosen = logp.gather(2, seqs.unsqueeze(2)).squeeze(2)
    return (chosen * (seqs != vocab.pad_id)).sum(1)


def decode_memory(model: CaptionModel, memory: Memory, vocab: Vocab, opts: DecodeOptions) -> Tensor:
    """(B, T) ids of the best caption per image."""
    opts = fit_vocab(opts, vocab)
    ids = dict(bos=vocab.bos_id, eos=vocab.eos_id, pad=vocab.pad_id, max_len=opts.max_len)
    method = opts.effective_method
    rules = constraints_for(vocab, opts)
    if method == "greedy":
        return greedy(model, memory, constraints=rules, **ids)
    if method == "sample":
        with torch.no_grad():
            return sample(model, memory, temperature=opts.temperature, generator=_generator(memory, opts.seed),
                          top_k=opts.top_k, top_p=opts.top_p, constraints=rules, **ids)[0]
    if method in EXTRA_DECODERS:
        return EXTRA_DECODERS[method](model, memory, vocab, opts)
    raise UsageError(f"unknown decoding method {opts.method!r}; choose from {', '.join(DECODING_METHODS)}")


def _beam(model: CaptionModel, memory: Memory, vocab: Vocab, opts: DecodeOptions) -> Tensor:
    with torch.no_grad():
        return beam_search(model, memory, vocab.bos_id, vocab.eos_id, vocab.pad_id, opts.max_len, opts.beam_size,
                           length_penalty=opts.length_penalty, constraints=constraints_for(vocab, opts)).best


EXTRA_DECODERS["beam"] = _beam


@torch.no_grad()
def caption_batch(model: CaptionModel, batch: dict[str, Tensor], vocab: Vocab, opts: DecodeOptions) -> list[str]:
    """Encode once, decode, and turn ids into words."""
    memory = model.encode(batch)
    seqs = decode_memory(model, memory, vocab, opts)
    return [vocab.decode(row.tolist()) for row in seqs]


def caption_images(
    model: CaptionModel,
    data: Any,
    indices: Sequence[int],
    vocab: Vocab,
    opts: DecodeOptions,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    progress: Progress = no_progress,
    task: str = "decode",
) -> dict[int, str]:
    """Captions of the images at ``indices`` of a caption set (``data.image_batch(index)`` → encoder inputs), as
    position → caption, ``batch_size`` images per forward; ``progress(task, done, total)`` after each batch."""
    out: dict[int, str] = {}
    for start in range(0, len(indices), batch_size):
        index = list(indices[start : start + batch_size])
        inputs = {k: v.to(device) for k, v in data.image_batch(index).items()}
        out.update(zip(index, caption_batch(model, inputs, vocab, opts), strict=True))
        progress(task, start + len(index), len(indices))
    return out


@torch.no_grad()
def caption_batch_nbest(
    model: CaptionModel, batch: dict[str, Tensor], vocab: Vocab, opts: DecodeOptions
) -> list[list[tuple[str, float]]]:
    """The ``opts.n_best`` best (caption, score) pairs of each image, best first."""
    memory = model.encode(batch)
    seqs, scores = decode_nbest(model, memory, vocab, opts)
    return [
        [(vocab.decode(s.tolist()), float(v)) for s, v in zip(rows, vals, strict=True)]
        for rows, vals in zip(seqs, scores, strict=True)
    ]
