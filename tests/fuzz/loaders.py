"""A seeded mutation fuzzer for every loader a user can point at a file: dense and sparse checkpoints, masks files,
``events.jsonl`` (through the monitor), Karpathy JSON, config TOML and images. Each input is a valid file mutated at
the byte level (flips, inserts, deletes, truncation) or, for JSON/TOML/headers, at the value level (a field replaced
by a value of another type or size). A loader may raise the project's own errors (``SparsecapError``); anything else
is a failure. ``tests/test_fuzz.py`` runs a few hundred inputs per loader; ``benchmarks/fuzz_loaders.py`` 10,000+.
"""

from __future__ import annotations

import json
import random
import struct
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparsecap_engine.errors import SparsecapError

WEIRD: list[Any] = [None, True, -1, 0, 2**63, 1e308, float("nan"), "", "x" * 300, [], {}, [1, "a"], {"a": 1},
                    "../../etc/passwd", -2**31, 3.5]


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if not b:
            b += bytes([rng.randrange(256)])
        elif op == 0:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b.insert(rng.randrange(len(b)), rng.randrange(256))
        elif op == 2:
            del b[rng.randrange(len(b))]
        else:
            b = b[: rng.randrange(len(b))]
    return bytes(b)


def _mutate_value(obj: Any, rng: random.Random, depth: int = 0) -> Any:
    """A copy of a JSON-like value with one node replaced (by a weird value or a mutated one)."""
    if isinstance(obj, dict) and obj and depth < 6:
        key = rng.choice(list(obj))
        out = dict(obj)
        r = rng.random()
        if r < 0.15:
            del out[key]
        elif r < 0.25:
            out[rng.choice(["", "zz", key + "x"])] = rng.choice(WEIRD)
        else:
            out[key] = _mutate_value(obj[key], rng, depth + 1)
        return out
    if isinstance(obj, list) and obj and depth < 6:
        out = list(obj)
        i = rng.randrange(len(out))
        if rng.random() < 0.2:
            del out[i]
        else:
            out[i] = _mutate_value(out[i], rng, depth + 1)
        return out
    return rng.choice(WEIRD)


def _mutate_safetensors(data: bytes, rng: random.Random) -> bytes:
    """Mutate the JSON header (shapes, dtypes, offsets, metadata) or the raw bytes."""
    if rng.random() < 0.3 or len(data) < 8:
        return _mutate_bytes(data, rng)
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        return _mutate_bytes(data, rng)
    meta = header.get("__metadata__")
    if meta and rng.random() < 0.6:  # our metadata: JSON strings per key
        key = rng.choice(list(meta))
        try:
            value = json.loads(meta[key])
            meta[key] = json.dumps(_mutate_value(value, rng))
        except ValueError:
            meta[key] = rng.choice(["{", "[]", "null", "1e999"])
    else:
        header = _mutate_value(header, rng)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def _mutate_json(text: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.3:
        return _mutate_bytes(text, rng)
    return json.dumps(_mutate_value(json.loads(text), rng)).encode()


def _mutate_lines(text: bytes, rng: random.Random) -> bytes:
    lines = text.decode().splitlines(keepends=True)
    i = rng.randrange(len(lines))
    if rng.random() < 0.5:
        lines[i] = _mutate_bytes(lines[i].encode(), rng).decode("utf-8", "replace")
    else:
        try:
            lines[i] = json.dumps(_mutate_value(json.loads(lines[i]), rng)) + "\n"
        except ValueError:
            pass
    return "".join(lines).encode()


@dataclass
class Target:
    """One loader: a valid seed file, how to mutate it and how to load it."""

    name: str
    seed_file: Path
    mutate: Callable[[bytes, random.Random], bytes]
    load: Callable[[Path], Any]
    suffix: str = ""


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    failures: dict[str, list[str]] = field(default_factory=dict)

    def add(self, target: str, kind: str, detail: str = "") -> None:
        self.counts[(target, kind)] += 1
        if kind == "bad" and len(self.failures.setdefault(target, [])) < 5:
            self.failures[target].append(detail)


def run(targets: list[Target], n: int, seed: int, work: Path) -> Report:
    """``n`` mutated inputs per target; ``ok``: loaded, ``error``: a project error, ``bad``: anything else."""
    report = Report()
    torch.set_num_threads(1)
    for t in targets:
        rng = random.Random(f"{seed}-{t.name}")
        original = t.seed_file.read_bytes()
        path = work / f"fuzz-{t.name}{t.suffix or t.seed_file.suffix}"
        for _ in range(n):
            path.write_bytes(t.mutate(original, rng))
            try:
                t.load(path)
                report.add(t.name, "ok")
            except SparsecapError:
                report.add(t.name, "error")
            except Exception as exc:  # noqa: BLE001 - what the fuzzer hunts
                where = traceback.extract_tb(exc.__traceback__)[-1]
                report.add(t.name, "bad", f"{exc.__class__.__name__}: {str(exc)[:120]} "
                                          f"({Path(where.filename).name}:{where.lineno})")
    return report


def make_targets(work: Path) -> list[Target]:
    """Seed files written by the project's own code, and their loaders."""
    from PIL import Image

    from sparsecap_engine.checkpoint.model_io import load_model, save_model
    from sparsecap_engine.checkpoint.pruned import load_masks, save_masks
    from sparsecap_engine.checkpoint.sparse import save_sparse
    from sparsecap_engine.config import RunConfig, load_toml, to_toml
    from sparsecap_engine.data.images import load_image
    from sparsecap_engine.data.karpathy import load_karpathy
    from sparsecap_engine.data.synthetic import generate_synthetic
    from sparsecap_engine.models.registry import build_model
    from sparsecap_engine.monitor_state import load_state
    from sparsecap_engine.runs import EventLog
    from sparsecap_engine.text.vocab import Vocab

    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    vocab = Vocab([f"w{i}" for i in range(12)])
    model = build_model({"name": "updown", "encoder": "regions", "encoder_args": {"feat_dim": 8}, "rnn_size": 16,
                         "input_encoding_size": 8, "att_hid_size": 8}, len(vocab))
    dense = work / "seed-dense.safetensors"
    save_model(dense, model, vocab, step=3, image_size=32, metrics={"CIDEr-D": 0.5})
    state = {k: (v * (torch.rand_like(v) > 0.9)) if v.dim() == 2 else v for k, v in model.state_dict().items()}
    sparse = work / "seed-sparse.safetensors"
    save_sparse(sparse, state, {"model": model.config, "vocab": vocab.to_json(), "encoder": "regions"},
                values="fp16")
    masks = work / "seed.masks.safetensors"
    save_masks(masks, {k: v != 0 for k, v in state.items() if v.dim() == 2}, sparsity={"overall": 0.9})
    run_dir = work / "seed-run"
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(to_toml(RunConfig().to_dict()))
    log = EventLog(run_dir / "events.jsonl")
    log.write("run_start", 0, config=RunConfig().to_dict(), model=model.config, device="cpu", params=10,
              train_images=4)
    for s in (1, 2, 3):
        log.write("train", s, epoch=0.1 * s, loss=2.0 / s, lr=1e-3, items_per_s=10.0)
    log.write("val", 3, metrics={"CIDEr-D": 0.4, "BLEU-4": 0.1})
    log.write("samples", 3, items=[{"image_id": 1, "caption": "a b", "refs": ["a b c"]}])
    log.write("sparsity", 3, method="gradual", overall=0.5, target=0.9, layers={"a": 0.5})
    log.write("checkpoint", 3, path="x", best=True)
    log.write("run_end", 3, status="completed", message="", best_step=3, best_cider=0.4)
    log.close()
    dataset = generate_synthetic(work / "seed-data", images=6, size=32, seed=1)
    config = work / "seed-config.toml"
    config.write_text(to_toml({"model": {"name": "updown"}, "train": {"steps": 5, "batch_size": 2},
                               "optim": {"lr": 0.001, "betas": [0.9, 0.999]}, "prune": {"method": "gradual"}}))
    image = work / "seed-image.png"
    Image.new("RGB", (20, 12), (10, 200, 30)).save(image)

    def monitor(path: Path) -> Any:
        target = work / "fuzz-run"
        (target / "checkpoints").mkdir(parents=True, exist_ok=True)
        (target / "config.toml").write_text((run_dir / "config.toml").read_text())
        (target / "events.jsonl").write_bytes(path.read_bytes())
        return load_state(target)

    def config_text(data: bytes, rng: random.Random) -> bytes:
        if rng.random() < 0.4:
            return _mutate_bytes(data, rng)
        import tomllib

        doc = _mutate_value(tomllib.loads(data.decode()), rng)
        if not isinstance(doc, dict):
            return _mutate_bytes(data, rng)
        return "\n".join(f"{k} = {json.dumps(v)}" if not isinstance(v, dict) else to_toml({k: v})
                         for k, v in doc.items()).encode()

    return [
        Target("dense-checkpoint", dense, _mutate_safetensors, load_model),
        Target("sparse-checkpoint", sparse, _mutate_safetensors, load_model),
        Target("masks", masks, _mutate_safetensors, load_masks, ".masks.safetensors"),
        Target("events", run_dir / "events.jsonl", _mutate_lines, monitor, ".jsonl"),
        Target("karpathy-json", dataset, _mutate_json, lambda p: load_karpathy(p, dataset.parent)),
        Target("config-toml", config, _safe(config_text), load_toml),
        Target("image", image, _mutate_bytes, lambda p: load_image(p, 32)),
    ]


def _safe(mutate: Callable[[bytes, random.Random], bytes]) -> Callable[[bytes, random.Random], bytes]:
    """A mutator that may itself fail to serialise (e.g. a weird value TOML cannot hold) falls back to bytes."""

    def wrapped(data: bytes, rng: random.Random) -> bytes:
        try:
            return mutate(data, rng)
        except (TypeError, ValueError, AttributeError):
            return _mutate_bytes(data, rng)

    return wrapped
