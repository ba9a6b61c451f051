"""Bad input through the real executable (issue 12): several hundred cases across every command, each classified.

Fixtures are built once in a temp folder (a tiny synthetic dataset, a 4-step dense run, a magnitude-pruned run, an
exported sparse checkpoint, a PNG); then every case runs ``sparsecap ...`` in a fresh working folder of its own (which
its setup may fill with corrupted copies of the fixtures), under a timeout and a memory limit. A case that should be
refused is ``ok`` when it exits 1 (runtime) or 2 (usage) with exactly one error line on stderr (typer's own usage
block, ``Usage: … Try … Error …``, counts as one), no traceback, no "internal error", and nothing written: the files
(path, size, mtime) under its working folder and the fixtures are compared before and after (``.lock`` files
ignored). A few valid edge cases are expected to succeed (exit 0). Run from the repo root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_bad_input.py [--filter SUBSTR] [--list] [--json OUT]
                                                                      [--jobs 1] [--timeout 120] [--mem-gb 6]

Classes: ``ok``; ``internal-error`` (an exception outside the project's error classes); ``traceback``;
``multi-line`` (not exactly one error line); ``wrote-files`` (failed, but created or changed files first);
``accepted`` (exit 0 for nonsense); ``exit-code`` (failed with another code than 1 or 2); ``refused`` (a valid edge
case that failed cleanly); ``hang`` (timeout); ``killed`` (a signal, or out of memory under the limit). Exit status
1 if any case is not ``ok``. ``tests/test_probe_bad_input.py`` runs a small subset in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EXE = str(Path(sys.executable).parent / "sparsecap")
#: a 4-step run in seconds (the flags of tests/test_prune_cli_config.py's ``tiny`` fixture)
TINY = ["--batch-size", "4", "--device", "cpu", "--quiet", "--set", "data.image_size=32", "--set", "model.rnn_size=32",
        "--set", "model.input_encoding_size=16", "--set", "model.att_hid_size=16", "--set", "train.val_images=4",
        "--set", 'model.encoder_args={"channels": [8, 16]}']
CLASSES = ("ok", "internal-error", "traceback", "multi-line", "wrote-files", "accepted", "exit-code", "refused",
           "hang", "killed")
COMMANDS = ("train", "prune", "eval", "caption", "inspect", "export", "monitor", "models", "data", "sweep", "doctor",
            "global")
HUGE = "99999999999999999999"  # > 2**64
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads chmod-000 files: no "unreadable" cases then

Setup = Callable[[Path, Path], None]  # (case folder, fixtures folder)


# ------------------------------------------------------------------------------------------------------ cases


@dataclass
class Case:
    """``sparsecap ARGS`` in a fresh folder ``$W`` (``$FX`` = the fixtures); ``expect`` ``fail`` (a clean refusal),
    ``ok`` (exit 0) or ``any`` (either: e.g. the monitor may show a damaged log or refuse it)."""

    id: str
    args: list[str]
    expect: str = "fail"
    setup: Setup | None = field(default=None, repr=False, compare=False)
    timeout: float | None = None

    @property
    def command(self) -> str:
        return self.id.split("/", 1)[0]

    def argv(self, work: Path, fx: Path) -> list[str]:
        return [a.replace("$FX", str(fx)).replace("$W", str(work)) for a in self.args]

    def line(self) -> str:
        return "sparsecap " + " ".join(_quote(a) for a in self.args)


def _quote(arg: str) -> str:
    return arg if arg and re.fullmatch(r"[\w@%+=:,./$\-]+", arg) else json.dumps(arg, ensure_ascii=False)


def steps(*fns: Setup | None) -> Setup:
    """Run setups in order."""

    def run(w: Path, fx: Path) -> None:
        for fn in fns:
            if fn is not None:
                fn(w, fx)

    return run


def copy(src: str, dst: str) -> Setup:
    """Copy ``$FX/src`` (file or folder) to ``$W/dst``."""

    def run(w: Path, fx: Path) -> None:
        s, d = fx / src, w / dst
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d, ignore=shutil.ignore_patterns(".lock"))
        else:
            shutil.copy2(s, d)

    return run


def write(rel: str, data: bytes | str) -> Setup:
    def run(w: Path, fx: Path) -> None:
        p = w / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    return run


def mkdir(rel: str) -> Setup:
    return lambda w, fx: (w / rel).mkdir(parents=True, exist_ok=True)


def remove(rel: str) -> Setup:
    def run(w: Path, fx: Path) -> None:
        p = w / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    return run


def truncate(rel: str, keep: float | int) -> Setup:
    """Keep the first ``keep`` bytes (an int) or that fraction of the file (a float)."""

    def run(w: Path, fx: Path) -> None:
        p = w / rel
        data = p.read_bytes()
        p.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])

    return run


def edit_text(rel: str, fn: Callable[[str], str]) -> Setup:
    def run(w: Path, fx: Path) -> None:
        p = w / rel
        p.write_text(fn(p.read_text()))

    return run


def edit_json(rel: str, fn: Callable[[Any], Any]) -> Setup:
    def run(w: Path, fx: Path) -> None:
        p = w / rel
        p.write_text(json.dumps(fn(json.loads(p.read_text()))))

    return run


def fifo(rel: str) -> Setup:
    def run(w: Path, fx: Path) -> None:
        (w / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(w / rel)

    return run


def chmod(rel: str, mode: int) -> Setup:
    return lambda w, fx: os.chmod(w / rel, mode)


def symlink(rel: str, target: str) -> Setup:
    return lambda w, fx: os.symlink(target.replace("$W", str(w)).replace("$FX", str(fx)), w / rel)


class Raw(str):
    """A metadata value written as is (not JSON-encoded)."""


DELETE = object()


def _read_st(path: Path) -> tuple[dict[str, Any], bytes]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _write_st(path: Path, header: dict[str, Any], body: bytes) -> None:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def st_meta(rel: str, **changes: Any) -> Setup:
    """Replace safetensors metadata values: a Python value (JSON-encoded, as the project writes them), ``Raw`` text,
    ``DELETE``; a key ``model__rnn_size`` changes one field of the JSON ``model`` value."""

    def run(w: Path, fx: Path) -> None:
        p = w / rel
        header, body = _read_st(p)
        meta = header.setdefault("__metadata__", {})
        for key, value in changes.items():
            if "__" in key:
                outer, inner = key.split("__", 1)
                obj = json.loads(meta[outer])
                if value is DELETE:
                    obj.pop(inner, None)
                else:
                    obj[inner] = value
                meta[outer] = json.dumps(obj)
            elif value is DELETE:
                meta.pop(key, None)
            else:
                meta[key] = value if isinstance(value, Raw) else json.dumps(value)
        _write_st(p, header, body)

    return run


def st_header(rel: str, fn: Callable[[dict[str, Any]], None]) -> Setup:
    """Edit the whole safetensors header (tensor entries: dtype, shape, data_offsets) in place."""

    def run(w: Path, fx: Path) -> None:
        p = w / rel
        header, body = _read_st(p)
        fn(header)
        _write_st(p, header, body)

    return run


def st_tensors(rel: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Setup:
    """Rewrite the tensors (``fn(tensors) -> tensors``), keeping the metadata."""

    def run(w: Path, fx: Path) -> None:
        from safetensors.torch import load_file, save_file

        p = w / rel
        header, _ = _read_st(p)
        tensors = fn(load_file(p))
        save_file({k: v.contiguous() for k, v in tensors.items()}, p, metadata=header.get("__metadata__"))

    return run


def torch_save(rel: str, obj_fn: Callable[[], Any]) -> Setup:
    def run(w: Path, fx: Path) -> None:
        import torch

        torch.save(obj_fn(), w / rel)

    return run


def _first_2d(tensors: dict[str, Any]) -> str:
    return next(k for k, v in sorted(tensors.items()) if v.dim() == 2 and "decoder" in k)


def fill(value: float, which: str = "all") -> Callable[[dict[str, Any]], dict[str, Any]]:
    def fn(tensors: dict[str, Any]) -> dict[str, Any]:
        keys = [k for k, v in tensors.items() if v.is_floating_point()]
        if which == "one":
            keys = [_first_2d(tensors)]
        return {k: (v.clone().fill_(value) if k in keys else v) for k, v in tensors.items()}

    return fn


def reshape_one(tensors: dict[str, Any]) -> dict[str, Any]:
    import torch

    key = _first_2d(tensors)
    return {**tensors, key: torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])}


def drop_one(tensors: dict[str, Any]) -> dict[str, Any]:
    key = _first_2d(tensors)
    return {k: v for k, v in tensors.items() if k != key}


def extra_one(tensors: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {**tensors, "decoder.bogus.weight": torch.zeros(3, 3)}


def to_dtype(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def fn(tensors: dict[str, Any]) -> dict[str, Any]:
        import torch

        dtype = getattr(torch, name)
        return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}

    return fn


def bad_offsets(header: dict[str, Any]) -> None:
    key = next(k for k in header if k != "__metadata__")
    header[key]["data_offsets"] = [0, 10**12]


def bad_shape(header: dict[str, Any]) -> None:
    key = next(k for k, v in header.items() if k != "__metadata__" and len(v["shape"]) == 2)
    header[key]["shape"] = [10**9, 10**9]


def bad_dtype(header: dict[str, Any]) -> None:
    key = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    header[key]["dtype"] = "Q99"


# images --------------------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` RGB and holds one tiny (wrong-sized) data chunk."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of zeros: a few kB on disk, width × height pixels decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\0" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    idat = b"".join(parts) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def image(rel: str, mode: str = "RGB", size: tuple[int, int] = (40, 30), fmt: str = "PNG", **save: Any) -> Setup:
    def run(w: Path, fx: Path) -> None:
        from PIL import Image

        p = w / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        color = {"RGB": (200, 30, 40), "RGBA": (200, 30, 40, 0), "CMYK": (0, 200, 30, 10), "I;16": 40000,
                 "F": 0.5}.get(mode, 100)
        Image.new(mode, size, color).save(p, fmt, **save)

    return run


def bomb(rel: str, width: int, height: int, header_only: bool = True) -> Setup:
    return write(rel, png_header_only(width, height) if header_only else png_bomb(width, height))


# ---------------------------------------------------------------------------------------------- case lists

RUN_BASE = ["--dataset", "$FX/data/dataset.json", "--runs-root", "$W/runs"]
TRAIN = ["train", *RUN_BASE, "--name", "t", "--steps", "2", "--val-every", "2", *TINY]
PRUNE = ["prune", "--from", "$FX/runs/dense", "--method", "magnitude", "--sparsity", "0.5", "--runs-root", "$W/runs",
         "--name", "p", "--steps", "2", "--val-every", "2", "--quiet"]
CAPTION = ["caption", "$FX/image.png", "--run", "$FX/runs/dense"]
EVAL = ["eval", "$W/run", "--limit", "2", "--metrics", "bleu", "--quiet"]
VOCAB_OK = ("<pad>", "<unk>", "<bos>", "<eos>")


def _without(args: list[str], *flags: str) -> list[str]:
    """``args`` without the given options (each with its value; ``--quiet`` alone)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in flags:
            skip = a not in ("--quiet",)
            continue
        out.append(a)
    return out


def _set(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with ``flag``'s value replaced (or added)."""
    return [*_without(args, flag), flag, value]


def checkpoint_corruptions(rel: str, sparse: bool = False) -> list[tuple[str, Setup, str]]:
    """(name, setup, expect) corruptions of the checkpoint at ``$W/rel`` (a copy made by the caller's setup)."""
    out: list[tuple[str, Setup, str]] = [
        ("empty", write(rel, b""), "fail"),
        ("garbage", write(rel, b"not a checkpoint at all\n" * 20), "fail"),
        ("invalid-utf8", write(rel, b"\xff\xfe\xfa" * 100), "fail"),
        ("header-len-huge", write(rel, struct.pack("<Q", 2**62) + b"{}"), "fail"),
        ("header-not-json", write(rel, struct.pack("<Q", 8) + b"{{{{{{{{"), "fail"),
        ("truncated-half", truncate(rel, 0.5), "fail"),
        ("truncated-header", truncate(rel, 40), "fail"),
        ("truncated-last-byte", truncate(rel, -1), "fail"),
        ("meta-none", st_header(rel, lambda h: h.pop("__metadata__", None)), "fail"),
        ("format-missing", st_meta(rel, format=DELETE), "fail"),
        ("format-int", st_meta(rel, format=5), "fail"),
        ("format-unknown", st_meta(rel, format="sparsecap-dense-99"), "fail"),
        ("format-masks", st_meta(rel, format="sparsecap-masks-1"), "fail"),
        ("meta-not-json", st_meta(rel, model=Raw("{not json")), "fail"),
        ("model-missing", st_meta(rel, model=DELETE), "fail"),
        ("model-list", st_meta(rel, model=[1, 2]), "fail"),
        ("model-string", st_meta(rel, model="updown"), "fail"),
        ("model-name-unknown", st_meta(rel, model__name="bogus"), "fail"),
        ("model-name-int", st_meta(rel, model__name=3), "fail"),
        ("model-rnn-size-huge", st_meta(rel, model__rnn_size=10**12), "fail"),
        ("model-rnn-size-zero", st_meta(rel, model__rnn_size=0), "fail"),
        ("model-rnn-size-string", st_meta(rel, model__rnn_size="32"), "fail"),
        ("model-rnn-size-float", st_meta(rel, model__rnn_size=32.5), "fail"),
        ("model-encoder-args-list", st_meta(rel, model__encoder_args=[8, 16]), "fail"),
        ("model-unknown-key", st_meta(rel, model__bogus_key=1), "ok"),  # read leniently (a newer version's key)
        ("vocab-missing", st_meta(rel, vocab=DELETE), "fail"),
        ("vocab-dict", st_meta(rel, vocab={"itos": ["a"]}), "fail"),
        ("vocab-int", st_meta(rel, vocab=7), "fail"),
        ("vocab-not-json", st_meta(rel, vocab="{nope"), "fail"),
        ("vocab-no-specials", st_meta(rel, vocab=json.dumps({"format": "sparsecap-vocab-1", "itos": ["a", "b"]})),
         "fail"),
        ("vocab-itos-ints", st_meta(rel, vocab=json.dumps({"format": "sparsecap-vocab-1", "itos": [1, 2, 3]})),
         "fail"),
        ("vocab-radix-bad", st_meta(rel, vocab=json.dumps({"format": "sparsecap-radix-1", "base": "x"})), "fail"),
        ("aliases-list", st_meta(rel, aliases=["a"]), "fail"),
        ("aliases-dangling", st_meta(rel, aliases={"decoder.x.weight": "nope"}), "fail"),
        ("image-size-string", st_meta(rel, image_size="big"), "fail"),
        ("image-size-negative", st_meta(rel, image_size=-32), "fail"),
        ("image-size-huge", st_meta(rel, image_size=10**7), "fail"),
        ("tensor-offsets", st_header(rel, bad_offsets), "fail"),
        ("tensor-shape-huge", st_header(rel, bad_shape), "fail"),
        ("tensor-dtype", st_header(rel, bad_dtype), "fail"),
    ]
    if not sparse:
        out += [
            ("weights-nan", st_tensors(rel, fill(float("nan"))), "fail"),
            ("weights-inf", st_tensors(rel, fill(float("inf")))  , "fail"),
            ("weight-one-nan", st_tensors(rel, fill(float("nan"), "one")), "fail"),
            ("weight-wrong-shape", st_tensors(rel, reshape_one), "fail"),
            ("weight-missing", st_tensors(rel, drop_one), "fail"),
            ("weight-extra", st_tensors(rel, extra_one), "fail"),
            ("weights-float64", st_tensors(rel, to_dtype("float64")), "ok"),
        ]
    else:
        out += [
            ("storage-missing", st_meta(rel, storage=DELETE), "fail"),
            ("storage-list", st_meta(rel, storage=[1]), "fail"),
            ("storage-kind", st_header(rel, lambda h: _storage(h, kind="zip")), "fail"),
            ("storage-shape", st_header(rel, lambda h: _storage(h, shape=[10**6, 10**6])), "fail"),
            ("storage-nnz", st_header(rel, lambda h: _storage(h, nnz=-5)), "ok"),  # informational fields: the
            ("values-unknown", st_meta(rel, values="fp8"), "ok"),  # tensors' own dtypes and bits decide
            ("version-99", st_meta(rel, version=99), "fail"),
        ]
    return out


def _storage(header: dict[str, Any], **change: Any) -> None:
    meta = header["__metadata__"]
    storage = json.loads(meta["storage"])
    key = next(k for k, v in storage.items() if v.get("pruned"))
    storage[key].update(change)
    meta["storage"] = json.dumps(storage)


#: corruptions tried on the sparse format too (the rest are shared with the dense one)
SPARSE_ONLY = ("truncated-half", "format-int", "aliases-dangling", "tensor-offsets", "tensor-dtype", "model-list",
               "vocab-int", "storage-missing", "storage-list", "storage-kind", "storage-shape", "storage-nnz",
               "values-unknown", "version-99")
#: container-level corruptions ``inspect`` must refuse (it describes any well-formed checkpoint, odd values included)
STRUCTURAL = ("empty", "garbage", "invalid-utf8", "header-len-huge", "header-not-json", "truncated-half",
              "truncated-header", "truncated-last-byte", "meta-none", "format-missing", "format-int", "format-unknown",
              "format-masks", "meta-not-json", "model-list", "model-missing", "vocab-missing", "vocab-int",
              "vocab-not-json", "aliases-list", "aliases-dangling", "tensor-offsets", "tensor-shape-huge",
              "tensor-dtype", "model-rnn-size-huge", "model-name-unknown")


def image_cases(prefix: str, make_args: Callable[[str], list[str]]) -> list[Case]:
    """Bad (and a few odd but valid) image files for ``caption``."""
    p = "$W/img"
    rows: list[tuple[str, Setup | None, str, str]] = [
        ("missing", None, f"{p}.png", "fail"),
        ("directory", mkdir("img.png"), f"{p}.png", "fail"),
        ("empty", write("img.png", b""), f"{p}.png", "fail"),
        ("garbage", write("img.png", b"GIF89a nope" * 10), f"{p}.png", "fail"),
        ("text-as-png", write("img.png", "a caption, not a picture\n"), f"{p}.png", "fail"),
        ("invalid-utf8-bytes", write("img.png", b"\xff\xfe\xfd" * 50), f"{p}.png", "fail"),
        ("truncated", steps(copy("image.png", "img.png"), truncate("img.png", 0.6)), f"{p}.png", "fail"),
        ("truncated-jpeg", steps(image("img.jpg", fmt="JPEG"), truncate("img.jpg", 0.5)), f"{p}.jpg", "fail"),
        ("header-100000x100000", bomb("img.png", 100_000, 100_000), f"{p}.png", "fail"),
        ("header-12000x12000", bomb("img.png", 12_000, 12_000), f"{p}.png", "fail"),
        ("extreme-aspect-1x10000000", bomb("img.png", 1, 10_000_000), f"{p}.png", "ok"),  # rows missing: black
        ("bomb-20000x20000", bomb("img.png", 20_000, 20_000, header_only=False), f"{p}.png", "fail"),
        ("header-0x0", write("img.png", png_header_only(0, 0)), f"{p}.png", "fail"),
        ("fifo", fifo("img.png"), f"{p}.png", "fail"),
        ("dev-zero", None, "/dev/zero", "fail"),
        ("dev-null", None, "/dev/null", "fail"),
        ("symlink-loop", symlink("img.png", "$W/img.png"), f"{p}.png", "fail"),
        ("png-named-jpg", copy("image.png", "img.jpg"), f"{p}.jpg", "ok"),
        ("no-extension", copy("image.png", "img"), p, "ok"),
        ("one-pixel", image("img.png", size=(1, 1)), f"{p}.png", "ok"),
        ("rgba", image("img.png", mode="RGBA"), f"{p}.png", "ok"),
        ("grey-16bit", image("img.png", mode="I;16"), f"{p}.png", "ok"),
        ("cmyk-jpeg", image("img.jpg", mode="CMYK", fmt="JPEG"), f"{p}.jpg", "ok"),
        ("palette-gif", image("img.gif", mode="P", fmt="GIF"), f"{p}.gif", "ok"),
        ("tall-thin", image("img.png", size=(2, 3000)), f"{p}.png", "ok"),
        ("non-utf8-name", lambda w, fx: shutil.copy2(fx / "image.png", os.fsencode(w) + b"/\xff\xfe.png"),
         "$W/\udcff\udcfe.png", "ok"),
        ("space-and-unicode-name", copy("image.png", "a b ü.png"), "$W/a b ü.png", "ok"),
    ]
    if not IS_ROOT:
        rows.append(("unreadable", steps(copy("image.png", "img.png"), chmod("img.png", 0)), f"{p}.png", "fail"))
    return [Case(f"{prefix}/image-{name}", make_args(path), expect, setup) for name, setup, path, expect in rows]


def global_cases() -> list[Case]:
    return [
        Case("global/unknown-command", ["bogus"]),
        Case("global/typo-command", ["trian"]),
        Case("global/unknown-option", ["--bogus"]),
        Case("global/data-unknown-subcommand", ["data", "bogus"]),
        Case("global/empty-command", [""]),
        Case("global/version", ["--version"], "ok"),
        Case("global/debug-unknown", ["--debug", "bogus"]),
    ]


def train_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, args: list[str], expect: str = "fail", setup: Setup | None = None) -> None:
        cases.append(Case(f"train/{name}", args, expect, setup))

    bad_values = {
        "--steps": ["0", "-1", HUGE, "1.5", "abc", ""],
        "--batch-size": ["0", "-4", HUGE, "10000000000"],
        "--lr": ["nan", "inf", "-1", "0", "1e999", "abc"],
        "--label-smoothing": ["2", "-0.1", "1", "nan"],
        "--grad-clip": ["nan", "-1", "inf"],
        "--val-every": ["0", "-1", HUGE],
        "--seed": [HUGE, "18446744073709551616", "1e3"],
        "--device": ["tpu", "cuda:99", "", "gpu", "cpu:x", "CPU"],
        "--model": ["bogus", "", "UPDOWN"],
        "--preset": ["bogus", "ort-paper"],
        "--schedule": ["bogus", ""],
        "--tokenizer": ["bogus", "WORD"],
        "--radix-base": ["1", "-5", HUGE],
        "--features": ["$W/missing.h5"],
        "--boxes": ["$W/missing"],
        "--image-root": ["$W/missing"],
    }
    for flag, values in bad_values.items():
        for v in values:
            add(f"{flag.strip('-')}={v or 'empty'}", _set(TRAIN, flag, v))
    add("preset-other-model", [*TRAIN, "--model", "updown", "--preset", "acort-base"])
    # --dataset
    ds = [
        ("missing", None, "$W/missing.json"),
        ("directory", mkdir("ds"), "$W/ds"),
        ("empty", write("ds.json", b""), "$W/ds.json"),
        ("garbage", write("ds.json", "not json"), "$W/ds.json"),
        ("invalid-utf8", write("ds.json", b'{"images": [\xff\xfe]}'), "$W/ds.json"),
        ("list", write("ds.json", "[]"), "$W/ds.json"),
        ("empty-object", write("ds.json", "{}"), "$W/ds.json"),
        ("images-string", write("ds.json", '{"images": "x"}'), "$W/ds.json"),
        ("images-empty", write("ds.json", '{"images": []}'), "$W/ds.json"),
        ("image-no-sentences", write("ds.json", json.dumps({"images": [{"filepath": "a", "filename": "b.png",
                                                                          "split": "train", "imgid": 0}]})),
         "$W/ds.json"),
        ("sentences-wrong-type", write("ds.json", json.dumps({"images": [
            {"filepath": "", "filename": "b.png", "split": "train", "imgid": 0, "sentences": [{"tokens": 5}]}]})),
         "$W/ds.json"),
        ("images-missing-files", steps(copy("data/dataset.json", "ds/dataset.json")), "$W/ds/dataset.json"),
        ("no-train-split", steps(copy("data", "ds"), edit_json("ds/dataset.json", lambda d: {
            **d, "images": [{**i, "split": "test"} for i in d["images"]]})), "$W/ds/dataset.json"),
        ("image-is-garbage", steps(copy("data", "ds"), edit_json("ds/dataset.json", lambda d: d),
                                   lambda w, fx: [p.write_bytes(b"x") for p in (w / "ds").rglob("*.png")]),
         "$W/ds/dataset.json"),
        ("fifo", fifo("ds.json"), "$W/ds.json"),
        ("dev-zero", None, "/dev/zero"),
    ]
    for name, setup, path in ds:
        add(f"dataset-{name}", _set(TRAIN, "--dataset", path), setup=setup)
    # --config
    cfg = [
        ("missing", None),
        ("directory", mkdir("c.toml")),
        ("garbage", write("c.toml", "this is = not [ toml")),
        ("invalid-utf8", write("c.toml", b"[train]\nsteps = 2\n# \xff\xfe\n")),
        ("binary", write("c.toml", bytes(range(256)))),
        ("unknown-section", write("c.toml", "[trian]\nsteps = 2\n")),
        ("unknown-key", write("c.toml", "[train]\nstep = 2\n")),
        ("wrong-type", write("c.toml", '[train]\nsteps = "two"\n')),
        ("wrong-type-float-for-int", write("c.toml", "[train]\nsteps = 2.5\n")),
        ("bool-for-int", write("c.toml", "[train]\nsteps = true\n")),
        ("section-not-table", write("c.toml", "train = 5\n")),
        ("nan", write("c.toml", "[optim]\nlr = nan\n")),
        ("inf", write("c.toml", "[optim]\nlr = inf\n")),
        ("huge-int", write("c.toml", "[train]\nseed = 9223372036854775807\n")),
        ("betas-three", write("c.toml", "[optim]\nbetas = [0.9, 0.99, 0.999]\n")),
        ("betas-string", write("c.toml", '[optim]\nbetas = "0.9"\n')),
        ("model-overrides-list", write("c.toml", "[model]\noverrides = [1]\n")),
        ("prune-not-table", write("c.toml", "prune = 3\n")),
        ("fifo", fifo("c.toml")),
    ]
    for name, setup in cfg:
        add(f"config-{name}", [*TRAIN, "--config", "$W/c.toml"], setup=setup)
    add("config-dev-zero", [*TRAIN, "--config", "/dev/zero"])
    # --set
    sets = ["steps=2", "train.steps", "train.step=2", "trian.steps=2", "train.steps=abc", "train.steps=1.5",
            "train.steps=true", "train.steps=-3", "train.steps=[1]", "optim.lr=NaN", "optim.lr=Infinity",
            "optim.lr=-1", "optim.lr=\"fast\"", "optim.betas=5", "optim.betas=[2, 3]", "optim.betas=[0.9]",
            "optim.eps=0", "optim.weight_decay=-1", "optim.warmup=-1", "optim.grad_clip_mode=bogus",
            "optim.step_rate=NaN", "optim.lr_min=-1", "model.rnn_size=0", "model.rnn_size=-1",
            "model.rnn_size=1000000000", "model.rnn_size=\"big\"", "model.rnn_size=1.5", "model.drop_prob_lm=2",
            "model.drop_prob_lm=-0.5", "model.encoder_args=5", "model.encoder_args={\"channels\": []}",
            "model.encoder_args={\"channels\": [0]}", "model.encoder_args={\"channels\": [-8, 16]}",
            "model.encoder_args={\"bogus\": 1}", "model.bogus=1", "model.name=bogus", "data.image_size=0",
            "data.image_size=-32", "data.image_size=1000000", "data.max_len=0", "data.max_len=1000000000",
            "data.seq_per_img=0", "data.min_word_count=-1", "data.box_format=bogus", "data.use_raw=\"yes\"",
            "train.num_threads=-1", "train.num_threads=100000", "train.keep_steps=[-1]", "train.keep_steps=\"x\"",
            "train.val_images=0", "train.val_images=-1", "train.log_every=0", "train.samples=-1",
            "train.amp=\"maybe\"", "train.device=tpu", "prune.method=magnitude", "scst.samples=3", "=1", ".=1",
            "train.=1"]
    for item in sets:
        add(f"set-{item}", [*TRAIN, "--set", item])
    # --name / --runs-root
    for name in ("../escape", "/tmp/abs", "a/b", "..", ".", "", "-x", "a\\b", "x" * 300, "ok\nname"):
        add(f"name={name[:20]!r}", _set(TRAIN, "--name", name))
    add("runs-root-is-file", _set(TRAIN, "--runs-root", "$W/f"), setup=write("f", "x"))
    add("runs-root-under-file", _set(TRAIN, "--runs-root", "$W/f/runs"), setup=write("f", "x"))
    add("runs-root-proc", _set(TRAIN, "--runs-root", "/proc/sparsecap-probe"))
    add("run-exists-not-empty", TRAIN, setup=copy("runs/dense", "runs/t"))
    add("run-path-is-file", TRAIN, setup=write("runs/t", "x"))
    if not IS_ROOT:
        add("runs-root-read-only", TRAIN, setup=steps(mkdir("runs"), chmod("runs", 0o555)))
    # --resume
    resume = ["train", "--resume", "--runs-root", "$W/runs", "--name", "dense", "--quiet"]
    dense = copy("runs/dense", "runs/dense")
    add("resume-no-name", _without(resume, "--name"), setup=dense)
    add("resume-missing-run", _set(resume, "--name", "nope"), setup=dense)
    add("resume-steps", [*resume, "--steps", "10"], setup=dense)
    add("resume-lr", [*resume, "--lr", "0.1"], setup=dense)
    add("resume-config", [*resume, "--config", "$FX/runs/dense/config.toml"], setup=dense)
    add("resume-set-optim", [*resume, "--set", "optim.lr=0.5"], setup=dense)
    add("resume-dataset", [*resume, "--dataset", "$FX/data/dataset.json"], setup=dense)
    add("resume-model", [*resume, "--model", "transformer"], setup=dense)
    add("resume-scst", [*resume, "--scst"], setup=dense)
    add("resume-pruning-run", _set(resume, "--name", "pruned"), setup=copy("runs/pruned", "runs/pruned"))
    add("resume-name-escape", _set(resume, "--name", "../runs/dense"), setup=dense)
    add("resume-device-tpu", [*resume, "--device", "tpu"], setup=dense)
    add("resume-completed", resume, "ok", setup=dense)
    add("resume-old-state-without-model", resume, "ok",  # an older state file: the last weights stand in
        setup=steps(dense, lambda w, fx: _edit_state(w / "runs/dense/checkpoints/last.state.pt", drop="model")))
    add("resume-device-cpu", [*resume, "--device", "cpu"], "ok", setup=dense)
    st = "runs/dense/checkpoints/last.state.pt"
    for name, setup in [
        ("state-missing", remove(st)),
        ("state-empty", write(st, b"")),
        ("state-garbage", write(st, b"garbage" * 100)),
        ("state-truncated", truncate(st, 0.5)),
        ("state-wrong-keys", torch_save(st, lambda: {"foo": 1})),
        ("state-list", torch_save(st, lambda: [1, 2, 3])),
        ("state-step-string", lambda w, fx: _edit_state(w / st, step="four")),
        ("state-step-negative", lambda w, fx: _edit_state(w / st, step=-3)),
        ("state-optimizer-garbage", lambda w, fx: _edit_state(w / st, optimizer={"state": 5})),
        ("state-directory", steps(remove(st), mkdir(st))),
        ("vocab-swapped", edit_json("runs/dense/vocab.json", lambda v: {**v, "itos": [*v["itos"][:4],
                                                                                   *reversed(v["itos"][4:])]})),
        ("vocab-garbage", write("runs/dense/vocab.json", "nope")),
        ("vocab-invalid-utf8", write("runs/dense/vocab.json", b'{"itos": ["\xff"]}')),
        ("vocab-directory", steps(remove("runs/dense/vocab.json"), mkdir("runs/dense/vocab.json"))),
        ("vocab-shorter", edit_json("runs/dense/vocab.json", lambda v: {**v, "itos": v["itos"][:10]})),
        ("config-garbage", write("runs/dense/config.toml", "[[[")),
        ("config-invalid-utf8", write("runs/dense/config.toml", b"[train]\n\xff = 1\n")),
        ("config-missing", remove("runs/dense/config.toml")),
        ("config-unknown-key", edit_text("runs/dense/config.toml", lambda t: t + "\n[bogus]\nx = 1\n")),
        ("config-steps-string", edit_text("runs/dense/config.toml", lambda t: t.replace("steps = 4",
                                                                                        'steps = "4"'))),
        ("config-dataset-gone", edit_text("runs/dense/config.toml", lambda t: re.sub(
            r'dataset = ".*"', 'dataset = "/nonexistent/dataset.json"', t))),
        ("checkpoints-missing", remove("runs/dense/checkpoints")),
    ]:
        add(f"resume-{name}", resume, setup=steps(dense, setup))
    # a damaged log loses history, not the run: resuming may go on or refuse, but cleanly
    add("resume-events-garbage", resume, "any", steps(dense, write("runs/dense/events.jsonl", b"\xff\xfe x\n{{{\n")))
    # SCST
    add("scst-no-from", [*TRAIN, "--scst"])
    add("scst-from-missing", [*TRAIN, "--scst", "--from", "$W/nope"])
    add("scst-from-garbage-file", [*TRAIN, "--scst", "--from", "$W/g.safetensors"], setup=write("g.safetensors", "x"))
    add("scst-from-not-run", [*TRAIN, "--scst", "--from", "$FX/data"])
    add("from-without-scst", [*TRAIN, "--from", "$FX/runs/dense"])
    scst = [*TRAIN, "--scst", "--from", "$FX/runs/dense"]
    for flag, v in [("--scst-samples", "0"), ("--scst-sample", "bogus"), ("--scst-baseline", "bogus"),
                    ("--cider-weight", "nan"), ("--cider-weight", "-1"), ("--bleu-weight", "a,b"),
                    ("--bleu-weight", "1,2,3,4,5"), ("--bleu-weight", "nan,0,0,0"), ("--from-checkpoint", "bogus"),
                    ("--from-checkpoint", "step-3"), ("--scst-samples", HUGE)]:
        add(f"scst{flag}={v}", [*scst, flag, v])
    add("scst-mean-one-sample", [*scst, "--scst-baseline", "mean", "--scst-samples", "1"])
    add("scst-zero-reward", [*scst, "--cider-weight", "0", "--bleu-weight", "0,0,0,0"])
    # valid edge cases
    add("ok-seed-negative", _set(TRAIN, "--seed", "-1"), "ok")
    add("ok-radix-base-0-is-the-default", [*TRAIN, "--radix-base", "0"], "ok")
    add("ok-one-step", _set(_set(TRAIN, "--steps", "1"), "--val-every", "1"), "ok")
    add("ok-unicode-name", _set(TRAIN, "--name", "ünï côdé"), "ok")
    add("ok-grad-clip-off", [*TRAIN, "--grad-clip", "0", "--label-smoothing", "0.1", "--seed", "0"], "ok")
    add("ok-val-every-beyond-steps", _set(TRAIN, "--val-every", "1000"), "ok")
    add("ok-overwrite", [*TRAIN, "--overwrite"], "ok", setup=copy("runs/dense", "runs/t"))
    return cases


def _edit_state(path: Path, drop: str | None = None, **changes: Any) -> None:
    import torch

    state = torch.load(path, weights_only=True)
    if drop:
        state.pop(drop, None)
    state.update(changes)
    torch.save(state, path)


def prune_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, args: list[str], expect: str = "fail", setup: Setup | None = None) -> None:
        cases.append(Case(f"prune/{name}", args, expect, setup))

    bad = {
        "--sparsity": ["nan", "inf", "-0.1", "1", "1.5", "abc", ""],
        "--method": ["bogus", "", "MAGNITUDE"],
        "--criterion": ["bogus", ""],
        "--from-checkpoint": ["bogus", "step-3", ""],
        "--min-density": ["-1", "2", "nan"],
        "--steps": ["0", "-1", HUGE],
        "--batch-size": ["0", HUGE],
        "--lr": ["nan", "-1"],
        "--label-smoothing": ["2"],
        "--grad-clip": ["nan"],
        "--device": ["tpu", ""],
        "--seed": [HUGE],
    }
    for flag, values in bad.items():
        for v in values:
            add(f"{flag.strip('-')}={v or 'empty'}", _set(PRUNE, flag, v))
    sm = _set(_without(PRUNE, "--from"), "--method", "supermask")
    sm = [*sm, "--dataset", "$FX/data/dataset.json", *TINY]
    for flag, v in [("--recipe", "bogus"), ("--ramp-end", "2"), ("--ramp-end", "-1"), ("--ramp-end", "nan"),
                    ("--harden-at", "0.1"), ("--harden-at", "nan"), ("--mask-init", "nan"), ("--mask-init", "inf"),
                    ("--mask-lr", "nan"), ("--mask-eps", "nan"),
                    ("--sparsity-weight", "nan"), ("--sparsity-weight", "inf"), ("--rounds", "3"),
                    ("--rewind-step", "2")]:
        add(f"supermask{flag}={v}", [*sm, flag, v])
    add("ok-supermask-mask-lr-0-is-auto", [*sm, "--mask-lr", "0", "--mask-eps", "0"], "ok")  # ≤ 0: the recipe's
    gr = [*_set(sm, "--method", "gradual")]
    add("ok-gradual-negative-is-auto", [*gr, "--prune-start", "-5", "--prune-end", "-5", "--prune-every", "-1"], "ok")
    for flag, v in [("--prune-every", "0"),
                    ("--initial-sparsity", "2"), ("--initial-sparsity", "nan"), ("--initial-sparsity", "0.9"),
                    ("--prune-start", "10")]:
        add(f"gradual{flag}={v}", [*gr, flag, v])
    add("gradual-end-before-start", [*gr, "--prune-start", "2", "--prune-end", "1"])
    snip = _set(sm, "--method", "snip")
    for v in ("0", "-1", HUGE):
        add(f"snip-batches={v}", [*snip, "--snip-batches", v])
    lot = _set(PRUNE, "--method", "lottery")
    for flag, v in [("--rounds", "0"), ("--rounds", "-1"), ("--rounds", HUGE), ("--rewind-step", "-1"),
                    ("--rewind-step", "3"), ("--rewind-step", HUGE)]:
        add(f"lottery{flag}={v}", [*lot, flag, v])
    add("ok-lottery-from-checkpoint-file", _set(lot, "--from", "$FX/runs/dense/checkpoints/best.safetensors"), "ok")
    add("lottery-from-magnitude-run", _set(lot, "--from", "$FX/runs/pruned"))
    for m in ("magnitude", "lottery", "fixed"):
        add(f"{m}-without-from", _without(_set(PRUNE, "--method", m), "--from"))
    add("fixed-from-dense", _set(PRUNE, "--method", "fixed"))
    add("magnitude-rounds", [*PRUNE, "--rounds", "3"])
    add("magnitude-rewind", [*PRUNE, "--rewind-step", "1"])
    add("freeze-only-commas", [*PRUNE, "--freeze", ",,,"], "ok")
    add("freeze-everything", [*PRUNE, "--freeze", "encoder,decoder"])
    # --from
    for name, setup, path in [
        ("missing", None, "$W/nope"),
        ("empty-dir", mkdir("r"), "$W/r"),
        ("dataset-dir", None, "$FX/data"),
        ("garbage-file", write("r.safetensors", b"junk"), "$W/r.safetensors"),
        ("masks-file", None, "$FX/runs/pruned/checkpoints/pruned.masks.safetensors"),
        ("run-no-checkpoints", steps(copy("runs/dense", "r"), remove("r/checkpoints")), "$W/r"),
        ("run-config-garbage", steps(copy("runs/dense", "r"), write("r/config.toml", "[[")), "$W/r"),
        ("run-config-invalid-utf8", steps(copy("runs/dense", "r"), write("r/config.toml", b"\xff")), "$W/r"),
        ("run-best-garbage", steps(copy("runs/dense", "r"), write("r/checkpoints/best.safetensors", b"x")), "$W/r"),
        ("run-best-nan", steps(copy("runs/dense", "r"), st_tensors("r/checkpoints/best.safetensors",
                                                                     fill(float("nan")))), "$W/r"),
        ("run-best-vocab-int", steps(copy("runs/dense", "r"), st_meta("r/checkpoints/best.safetensors", vocab=7)),
         "$W/r"),
        ("run-best-model-huge", steps(copy("runs/dense", "r"), st_meta("r/checkpoints/best.safetensors",
                                                                         model__rnn_size=10**12)), "$W/r"),
        ("fifo", fifo("r.safetensors"), "$W/r.safetensors"),
        ("dev-zero", None, "/dev/zero"),
    ]:
        add(f"from-{name}", _set(PRUNE, "--from", path), setup=setup)
    fixed = _set(PRUNE, "--method", "fixed")
    pr = "r/checkpoints/best.masks.safetensors"
    for name, setup in [
        ("masks-garbage", write(pr, b"junk")),
        ("masks-empty", write(pr, b"")),
        ("masks-format", st_meta(pr, format="sparsecap-dense-1")),
        ("masks-wrong-shape", st_tensors(pr, lambda t: {k: v[:1] for k, v in t.items()})),
        ("masks-unknown-names", st_tensors(pr, lambda t: {"x." + k: v for k, v in t.items()})),
        ("masks-float", st_tensors(pr, lambda t: {k: v.float() * 3.5 for k, v in t.items()})),
        ("masks-none", st_tensors(pr, lambda t: {})),
    ]:
        add(f"fixed-{name}", _set(fixed, "--from", "$W/r"), setup=steps(copy("runs/pruned", "r"), setup))
    # config and --set
    for name, text in [("unknown-prune-key", "[prune]\nmethd = 'magnitude'\n"),
                       ("prune-sparsity-string", "[prune]\nsparsity = 'half'\n"),
                       ("prune-freeze-int", "[prune]\nfreeze = 5\n"),
                       ("prune-rounds-float", "[prune]\nrounds = 1.5\n"),
                       ("invalid-utf8", b"[prune]\nmethod = '\xff'\n")]:
        add(f"config-{name}", [*_without(PRUNE, "--sparsity"), "--config", "$W/c.toml"], setup=write("c.toml", text))
    # a flag given beside them would win over these values: the base leaves out the flags they set
    for item in ("prune.sparsity=nan", "prune.sparsity=\"x\"", "prune.bogus=1", "prune.methd=gradual",
                 "prune.rounds=true", "prune.freeze=5", "prune.layer_share=-1", "prune.sharpen=0",
                 "prune.sampling=bogus", "prune.source=/nonexistent"):
        add(f"set-{item}", [*_without(sm, "--sparsity"), "--set", item])
    # names, roots
    for name in ("../escape", "a/b", "..", ""):
        add(f"name={name!r}", _set(PRUNE, "--name", name))
    add("runs-root-is-file", _set(PRUNE, "--runs-root", "$W/f"), setup=write("f", "x"))
    add("run-exists", PRUNE, setup=copy("runs/pruned", "runs/p"))
    # --resume
    resume = ["prune", "--resume", "--runs-root", "$W/runs", "--name", "pruned", "--quiet"]
    pruned = copy("runs/pruned", "runs/pruned")
    add("resume-no-name", _without(resume, "--name"), setup=pruned)
    add("resume-missing", _set(resume, "--name", "nope"), setup=pruned)
    add("resume-sparsity", [*resume, "--sparsity", "0.9"], setup=pruned)
    add("resume-method", [*resume, "--method", "gradual"], setup=pruned)
    add("resume-steps", [*resume, "--steps", "100"], setup=pruned)
    add("resume-set-prune", [*resume, "--set", "prune.sparsity=0.9"], setup=pruned)
    add("resume-dense-run", _set(resume, "--name", "dense"), setup=copy("runs/dense", "runs/dense"))
    add("resume-state-wrong-keys", resume, setup=steps(pruned, torch_save("runs/pruned/checkpoints/last.state.pt",
                                                                          lambda: {"step": 1})))
    add("resume-state-garbage", resume, setup=steps(pruned, write("runs/pruned/checkpoints/last.state.pt", b"x")))
    add("resume-config-prune-garbage", resume, setup=steps(pruned, edit_text(
        "runs/pruned/config.toml", lambda t: t.replace('method = "magnitude"', 'method = "bogus"'))))
    add("resume-completed", resume, "ok", setup=pruned)
    # valid edge cases
    add("ok-sparsity-zero", _set(PRUNE, "--sparsity", "0"), "ok")
    add("ok-from-checkpoint-file", _set(PRUNE, "--from", "$FX/runs/dense/checkpoints/best.safetensors"), "ok")
    add("ok-from-sparse-export", _set(PRUNE, "--from", "$FX/sparse.safetensors"), "ok")
    return cases


def caption_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, args: list[str], expect: str = "fail", setup: Setup | None = None) -> None:
        cases.append(Case(f"caption/{name}", args, expect, setup))

    sample = [*CAPTION, "--sample"]
    for flag, v, base in [
        ("--beam", "0", CAPTION), ("--beam", "-1", CAPTION), ("--beam", HUGE, CAPTION), ("--beam", "abc", CAPTION),
        ("--beam", "1000000000", CAPTION),
        ("--temperature", "nan", sample), ("--temperature", "inf", sample), ("--temperature", "0", sample),
        ("--temperature", "-1", sample), ("--temperature", "nan", CAPTION),
        ("--top-k", "-1", sample), ("--top-k", HUGE, sample), ("--top-p", "nan", sample), ("--top-p", "0", sample),
        ("--top-p", "-0.5", sample), ("--top-p", "1.5", sample), ("--seed", HUGE, sample), ("--seed", "-1", sample),
        ("--length-penalty", "bogus", CAPTION), ("--length-penalty", "wu_nan", [*CAPTION, "--beam", "2"]),
        ("--length-penalty", "wu_abc", [*CAPTION, "--beam", "2"]), ("--length-penalty", "wu_-1", [*CAPTION, "--beam",
                                                                                                     "2"]),
        ("--block-ngram", "-1", CAPTION), ("--min-len", "-1", CAPTION), ("--min-len", "100", CAPTION),
        ("--n-best", "0", CAPTION), ("--n-best", "-1", CAPTION), ("--n-best", "5", [*CAPTION, "--beam", "2"]),
        ("--n-best", HUGE, sample), ("--max-len", "0", CAPTION), ("--max-len", "-1", CAPTION),
        ("--max-len", "1000000000", CAPTION), ("--max-len", HUGE, CAPTION), ("--device", "tpu", CAPTION),
        ("--device", "cuda:99", CAPTION), ("--device", "", CAPTION), ("--device", "meta", CAPTION),
        ("--sparse", "bogus", CAPTION), ("--sparse", "", CAPTION),
    ]:
        # the beam is capped at the vocabulary and top-k at its size: huge values are fine
        fine = (flag, v) in {("--beam", HUGE), ("--beam", "1000000000"), ("--top-k", HUGE), ("--seed", "-1")}
        add(f"{flag.strip('-')}={v or 'empty'}{'-sample' if base is sample else ''}", [*base, flag, v],
            "ok" if fine else "fail")
    add("sample-and-beam", [*CAPTION, "--sample", "--beam", "3"])
    add("no-source", ["caption", "$FX/image.png"], "ok")  # the bundled demo model
    add("run-and-checkpoint", [*CAPTION, "--checkpoint", "$FX/sparse.safetensors"])
    add("no-images", ["caption", "--run", "$FX/runs/dense"])
    add("one-bad-among-good", [*CAPTION, "$W/missing.png"])
    for name, setup, path in [
        ("missing", None, "$W/nope"),
        ("file", write("r", "x"), "$W/r"),
        ("empty-dir", mkdir("r"), "$W/r"),
        ("dataset-dir", None, "$FX/data"),
        ("no-checkpoints", steps(copy("runs/dense", "r"), remove("r/checkpoints")), "$W/r"),
        ("config-garbage", steps(copy("runs/dense", "r"), write("r/config.toml", "[[[")), "$W/r"),
        ("config-image-size-0", steps(copy("runs/dense", "r"), st_meta("r/checkpoints/best.safetensors",
                                                                         image_size=DELETE),
                                      edit_text("r/config.toml", lambda t: t.replace("image_size = 32",
                                                                                     "image_size = 0"))), "$W/r"),
        ("best-is-dir", steps(copy("runs/dense", "r"), remove("r/checkpoints/best.safetensors"),
                              remove("r/checkpoints/last.safetensors"), mkdir("r/checkpoints/best.safetensors")),
         "$W/r"),
    ]:
        add(f"run-{name}", _set(CAPTION, "--run", path), setup=setup)
    ck = ["caption", "$FX/image.png", "--checkpoint", "$W/c.safetensors"]
    add("checkpoint-missing", ck)
    add("checkpoint-dir", ck, setup=mkdir("c.safetensors"))
    add("checkpoint-fifo", ck, setup=fifo("c.safetensors"))
    add("checkpoint-dev-zero", _set(ck, "--checkpoint", "/dev/zero"))
    add("checkpoint-masks-file", _set(ck, "--checkpoint", "$FX/runs/pruned/checkpoints/pruned.masks.safetensors"))
    add("checkpoint-state-pt", _set(ck, "--checkpoint", "$FX/runs/dense/checkpoints/last.state.pt"))
    for name, setup, expect in checkpoint_corruptions("c.safetensors"):
        add(f"dense-{name}", ck, expect, steps(copy("runs/dense/checkpoints/best.safetensors", "c.safetensors"),
                                               setup))
    for name, setup, expect in checkpoint_corruptions("c.safetensors", sparse=True):
        if name not in SPARSE_ONLY:
            continue  # the dense cases cover what the two formats share
        add(f"sparse-{name}", ck, expect, steps(copy("sparse.safetensors", "c.safetensors"), setup))
    cases += image_cases("caption", lambda path: ["caption", path, "--run", "$FX/runs/dense"])
    # valid edge cases
    add("ok-json", [*CAPTION, "--json"], "ok")
    add("ok-nbest-beam", [*CAPTION, "--beam", "3", "--n-best", "3", "--json"], "ok")
    add("ok-sparse-on-dense", [*CAPTION, "--sparse", "on"], "ok")
    add("ok-sparse-checkpoint", ["caption", "$FX/image.png", "--checkpoint", "$FX/sparse.safetensors"], "ok")
    add("ok-same-image-twice", [*CAPTION, "$FX/image.png"], "ok")
    add("ok-max-len-1", [*CAPTION, "--max-len", "1"], "ok")
    add("ok-top-k-huge", [*sample, "--top-k", "1000000"], "ok")
    add("ok-beam-huge", [*CAPTION, "--beam", "100000"], "ok")
    return cases


def eval_cases() -> list[Case]:
    cases: list[Case] = []
    run = copy("runs/dense", "run")

    def add(name: str, args: list[str], expect: str = "fail", setup: Setup | None = run) -> None:
        cases.append(Case(f"eval/{name}", args, expect, setup))

    for flag, v in [("--split", "bogus"), ("--split", ""), ("--split", "TEST"), ("--limit", "-1"),
                    ("--checkpoint", "bogus"), ("--checkpoint", ""),
                    ("--metrics", "bogus"), ("--metrics", ",,,"), ("--metrics", "bleu,bogus"), ("--device", "tpu"),
                    ("--device", ""), ("--beam", "0"), ("--beam", "-2"), ("--max-len", "0"), ("--max-len", HUGE),
                    ("--temperature", "nan"), ("--min-len", "-1"), ("--length-penalty", "bogus"),
                    ("--block-ngram", "-3"), ("--top-p", "2")]:
        add(f"{flag.strip('-')}={v or 'empty'}", _set(EVAL, flag, v))
    add("sample-temperature-nan", [*EVAL, "--sample", "--temperature", "nan"])
    add("sample-and-beam", [*EVAL, "--sample", "--beam", "2"])
    add("checkpoint-last-missing", _set(EVAL, "--checkpoint", "last"),
        setup=steps(run, remove("run/checkpoints/last.safetensors")))
    for name, target, setup in [
        ("per-image-directory", "$W/out", mkdir("out")),
        ("per-image-proc", "/proc/sparsecap-probe.csv", None),
        ("per-image-empty", "", None),
    ]:
        add(name, [*EVAL, "--per-image", target], setup=steps(run, setup))
    for name, setup, path in [
        ("missing", None, "$W/nope"),
        ("file", write("r", "x"), "$W/r"),
        ("empty-dir", mkdir("r"), "$W/r"),
        ("dataset-dir", None, "$FX/data"),
    ]:
        add(f"run-{name}", ["eval", path, "--limit", "2", "--metrics", "bleu", "--quiet"], setup=setup)
    for name, setup in [
        ("no-checkpoints", remove("run/checkpoints")),
        ("config-garbage", write("run/config.toml", "[[[")),
        ("config-invalid-utf8", write("run/config.toml", b"\xff\xfe")),
        ("config-unknown-section", edit_text("run/config.toml", lambda t: t + "\n[bogus]\n")),
        ("config-dataset-gone", edit_text("run/config.toml", lambda t: re.sub(
            r'dataset = ".*"', 'dataset = "/nonexistent/dataset.json"', t))),
        ("config-dataset-garbage", steps(write("ds.json", "nope"), _point_dataset("run/config.toml", "ds.json"))),
        ("config-image-size-0", edit_text("run/config.toml", lambda t: t.replace("image_size = 32",
                                                                                 "image_size = 0"))),
        ("best-garbage", write("run/checkpoints/best.safetensors", b"x")),
        ("best-nan", st_tensors("run/checkpoints/best.safetensors", fill(float("nan")))),
        ("best-vocab-dict", st_meta("run/checkpoints/best.safetensors", vocab={"a": 1})),
        ("best-model-huge", st_meta("run/checkpoints/best.safetensors", model__rnn_size=10**12)),
        ("eval-is-file", write("run/eval", "x")),
    ]:
        add(f"run-{name}", EVAL, setup=steps(run, setup))
    add("ok-limit-1", _set(EVAL, "--limit", "1"), "ok")
    add("ok-limit-huge", _set(EVAL, "--limit", HUGE), "ok")
    add("ok-checkpoint-init", _set(EVAL, "--checkpoint", "init"), "ok")
    add("ok-per-image-txt-new-folder", [*EVAL, "--per-image", "$W/no/such/out.txt"], "ok")
    # eval reads the run's config and the checkpoint's vocabulary: these files are not its input
    add("ok-checkpoint-image-size-ignored", EVAL, "ok",
        steps(run, st_meta("run/checkpoints/best.safetensors", image_size=10**7)))
    add("ok-vocab-json-not-read", EVAL, "ok", steps(run, write("run/vocab.json", b"\xff")))
    add("ok-val-split-json", [*EVAL, "--split", "val", "--json"], "ok")
    add("ok-per-image-json", [*EVAL, "--per-image", "$W/per.json"], "ok")
    return cases


def _point_dataset(config: str, dataset: str) -> Setup:
    """Make the run config at ``$W/config`` name ``$W/dataset`` as its dataset."""

    def run(w: Path, fx: Path) -> None:
        p = w / config
        p.write_text(re.sub(r'dataset = ".*"', f'dataset = "{w / dataset}"', p.read_text()))

    return run


def inspect_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, args: list[str], expect: str = "fail", setup: Setup | None = None) -> None:
        cases.append(Case(f"inspect/{name}", args, expect, setup))

    add("missing", ["inspect", "$W/nope.safetensors"])
    add("directory-not-run", ["inspect", "$FX/data"])
    add("empty-dir", ["inspect", "$W/d"], setup=mkdir("d"))
    add("run-no-checkpoints", ["inspect", "$W/r"], setup=steps(copy("runs/dense", "r"), remove("r/checkpoints")))
    add("fifo", ["inspect", "$W/c.safetensors"], setup=fifo("c.safetensors"))
    add("dev-zero", ["inspect", "/dev/zero"])
    add("state-pt", ["inspect", "$FX/runs/dense/checkpoints/last.state.pt"])
    add("masks-file", ["inspect", "$FX/runs/pruned/checkpoints/pruned.masks.safetensors"])
    ck = ["inspect", "$W/c.safetensors"]
    for name, setup, expect in checkpoint_corruptions("c.safetensors"):
        if name not in STRUCTURAL:
            continue
        add(f"dense-{name}", ck, expect, steps(copy("runs/dense/checkpoints/best.safetensors", "c.safetensors"),
                                               setup))
    masks = "r/checkpoints/pruned.masks.safetensors"
    for name, setup in [
        ("masks-garbage", write(masks, b"junk")),
        ("masks-format", st_meta(masks, format=5)),
        ("masks-wrong-shape", st_tensors(masks, lambda t: {k: v[:1] for k, v in t.items()})),
        ("masks-unknown-names", st_tensors(masks, lambda t: {"x." + k: v for k, v in t.items()})),
        ("masks-directory", steps(remove(masks), mkdir(masks))),
    ]:
        add(f"run-{name}", ["inspect", "$W/r"], "fail" if name in ("masks-garbage", "masks-format") else "any",
            setup=steps(copy("runs/pruned", "r"), setup))
    ok = ["inspect", "$FX/sparse.safetensors"]
    for name, target, setup in [
        ("plot-directory", "$W/out", mkdir("out")),
        ("plot-proc", "/proc/sparsecap-probe.png", None),
        ("plot-empty", "", None),
    ]:
        add(name, [*ok, "--plot", target], setup=setup)
    for v in ("0", "-1", HUGE, "100000"):
        add(f"bench-threads={v}", [*ok, "--bench", "--threads", v])
    add("bench-garbage", ["inspect", "$W/c.safetensors", "--bench"], setup=write("c.safetensors", b"junk"))
    add("ok-dense", ["inspect", "$FX/runs/dense/checkpoints/best.safetensors"], "ok")
    add("ok-sparse-json-params", [*ok, "--json", "--params"], "ok")
    add("ok-run-dir", ["inspect", "$FX/runs/pruned"], "ok")
    add("ok-plot", [*ok, "--plot", "$W/p.png"], "ok")
    add("ok-plot-new-folders-any-name", [*ok, "--plot", "$W/no/such/plot"], "ok")
    add("ok-weights-nan", ck, "ok", steps(copy("runs/dense/checkpoints/best.safetensors", "c.safetensors"),
                                          st_tensors("c.safetensors", fill(float("nan")))))
    return cases


def export_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, args: list[str], expect: str = "fail", setup: Setup | None = None) -> None:
        cases.append(Case(f"export/{name}", args, expect, setup))

    base = ["export", "$FX/runs/pruned", "--out", "$W/out.safetensors"]
    for v in ("bogus", "fp8", "", "FP16", "bf16"):
        add(f"values={v or 'empty'}", _set(base, "--values", v))
    for name, target, setup in [
        ("out-directory", "$W/out", mkdir("out")),
        ("out-proc", "/proc/sparsecap-probe.safetensors", None),
        ("out-empty", "", None),
        ("out-fifo", "$W/fifo", fifo("fifo")),
        ("out-symlink-to-dir", "$W/link", steps(mkdir("d"), symlink("link", "$W/d"))),
        ("out-under-file", "$W/f/out.safetensors", write("f", "x")),
    ]:
        add(name, _set(base, "--out", target), setup=setup)
    src = ["export", "$W/c.safetensors", "--out", "$W/out.safetensors"]
    add("source-missing", src)
    add("source-dataset-dir", ["export", "$FX/data", "--out", "$W/out.safetensors"])
    add("source-masks", ["export", "$FX/runs/pruned/checkpoints/pruned.masks.safetensors", "--out",
                         "$W/out.safetensors"])
    add("source-fifo", src, setup=fifo("c.safetensors"))
    for name in ("garbage", "truncated-half", "format-int", "model-missing", "vocab-int", "aliases-list",
                 "model-rnn-size-huge", "tensor-offsets", "tensor-shape-huge", "weight-wrong-shape",
                 "model-name-unknown", "weights-nan"):
        setup = dict((n, s) for n, s, _ in checkpoint_corruptions("c.safetensors"))[name]
        add(f"source-{name}", src, setup=steps(copy("runs/pruned/checkpoints/pruned.safetensors", "c.safetensors"),
                                                setup))
    add("ok-out-new-folders", _set(base, "--out", "$W/no/such/out.safetensors"), "ok")
    add("ok-fp16", _set(base, "--values", "fp16"), "ok")
    add("ok-dense-json", ["export", "$FX/runs/dense", "--out", "$W/o.safetensors", "--json"], "ok")
    add("ok-sparse-again", ["export", "$FX/sparse.safetensors", "--out", "$W/o.safetensors"], "ok")
    add("ok-overwrite-out", base, "ok", setup=write("out.safetensors", "old"))
    return cases


def monitor_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, args: list[str], expect: str = "fail", setup: Setup | None = None) -> None:
        cases.append(Case(f"monitor/{name}", args, expect, setup))

    once = ["monitor", "$W/run", "--once"]
    run = copy("runs/dense", "run")
    add("missing", ["monitor", "$W/nope", "--once"])
    add("file", ["monitor", "$W/f", "--once"], setup=write("f", "x"))
    add("checkpoint-file", ["monitor", "$FX/sparse.safetensors", "--once"])
    add("fifo", ["monitor", "$W/f", "--once"], setup=fifo("f"))
    add("dev-null", ["monitor", "/dev/null", "--once"])
    for v in ("0", "-1", "nan", "inf", "abc"):
        add(f"interval={v}", [*once, "--interval", v], setup=run)
    for v in ("0", "-1", HUGE):
        add(f"points={v}", ["monitor", "$W/run", "--json", "--points", v], "ok", setup=run)  # at most N: any N
    ev = "run/events.jsonl"
    for name, data in [
        ("empty", b""),
        ("garbage", b"garbage\n" * 10),
        ("invalid-utf8", b"\xff\xfe\xfd\n" * 10),
        ("binary", bytes(range(256)) * 4),
        ("json-list-lines", b"[1, 2]\n[3]\n"),
        ("wrong-types", (json.dumps({"kind": "train", "step": "x", "loss": "y", "time": "z"}) + "\n"
                         + json.dumps({"kind": "val", "step": 1, "metrics": [1, 2]}) + "\n"
                         + json.dumps({"kind": "sparsity", "step": 1, "layers": 5, "overall": "a"}) + "\n"
                         + json.dumps({"kind": "samples", "step": 1, "items": "x"}) + "\n"
                         + json.dumps({"kind": "run_end", "step": 1, "status": 5}) + "\n").encode()),
        ("huge-step", (json.dumps({"kind": "train", "step": 10**30, "loss": 1e308, "time": -1}) + "\n").encode()),
        ("nan-values", b'{"kind": "train", "step": NaN, "loss": NaN, "lr": Infinity, "time": 1}\n'),
        ("no-newline-at-end", b'{"kind": "train", "step": 1, "loss": 2.0, "time": 1}'),
        ("one-long-line", b'{"kind": "train", "step": 1, "pad": "' + b"x" * 5_000_000 + b'"}\n'),
    ]:
        add(f"events-{name}", once, "ok", steps(run, write(ev, data)))
    add("events-directory", once, "ok", steps(run, remove(ev), mkdir(ev)))
    add("events-fifo", once, "ok", steps(run, remove(ev), fifo(ev)))
    add("config-garbage", once, "ok", steps(run, write("run/config.toml", "[[[")))
    add("config-invalid-utf8", once, "ok", steps(run, write("run/config.toml", b"\xff\xfe")))
    sweep = ["monitor", "$W/sw", "--once"]
    mk = copy("sweeps/sw", "sw")  # a real (dry-run) sweep folder: plan.json, configs/
    plan = "sw/plan.json"
    for name, setup in [("plan-garbage", write(plan, b"{{{")), ("plan-invalid-utf8", write(plan, b"\xff")),
                        ("plan-list", write(plan, b"[1, 2]")),
                        ("plan-cells-int", edit_json(plan, lambda d: {**d, "cells": 5})),
                        ("plan-cell-fields", edit_json(plan, lambda d: {**d, "cells": [{"id": 5, "method": None}]})),
                        ("plan-no-name", edit_json(plan, lambda d: {k: v for k, v in d.items() if k != "name"})),
                        ("results-garbage", write("sw/results.json", b"\xff{")),
                        ("events-garbage", write("sw/events.jsonl", b"\xff\n{{\n"))]:
        add(f"sweep-{name}", sweep, "any", steps(mk, setup))
        add(f"sweep-json-{name}", ["monitor", "$W/sw", "--json"], "any", steps(mk, setup))
    add("sweep-plan-future-format", sweep, "fail", steps(mk, edit_json(plan, lambda d: {
        **d, "format": "sparsecap-sweep/99"})))
    add("ok-sweep", sweep, "ok", mk)
    add("ok-sweeps-root", ["monitor", "$FX/sweeps", "--once"], "ok")
    add("json-wrong-types", ["monitor", "$W/run", "--json"], "ok", steps(run, write(ev, json.dumps(
        {"kind": "val", "step": 1, "metrics": {"CIDEr-D": "x"}}) + "\n")))
    add("ok-run", once, "ok", run)
    add("ok-root", ["monitor", "$FX/runs", "--once"], "ok")
    add("ok-empty-dir", ["monitor", "$W/e", "--once"], "ok", mkdir("e"))
    add("ok-json", ["monitor", "$FX/runs/pruned", "--json"], "ok")
    return cases


def data_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, args: list[str], expect: str = "fail", setup: Setup | None = None) -> None:
        cases.append(Case(f"data/{name}", args, expect, setup))

    synth = ["data", "synth", "--out", "$W/d", "--images", "3", "--size", "32"]
    for flag, v in [("--images", "0"), ("--images", "-1"), ("--images", HUGE), ("--images", "abc"),
                    ("--images", "100000000000"), ("--size", "31"), ("--size", "2000"), ("--size", "abc"),
                    ("--seed", "abc"), ("--out", "/proc/sparsecap-probe")]:
        add(f"synth{flag}={v or 'empty'}", _set(synth, flag, v))
    add("synth-out-is-file", synth, setup=write("d", "x"))
    add("synth-out-not-synthetic", synth, setup=write("d/mine.txt", "precious"))
    add("synth-out-under-file", _set(synth, "--out", "$W/f/d"), setup=write("f", "x"))
    scene = ["data", "scene", "--out", "$W/s.png", "--size", "32"]
    for flag, v in [("--size", "10"), ("--size", "99999"), ("--seed", "x"), ("--out", ""),
                    ("--out", "/proc/sparsecap-probe.png")]:
        add(f"scene{flag}={v or 'empty'}", _set(scene, flag, v))
    add("scene-out-directory", _set(scene, "--out", "$W/o"), setup=mkdir("o"))
    pack = ["data", "pack-features", "$W/feats", "--out", "$W/f.h5", "--quiet"]
    npy = _npy
    for name, setup, extra in [
        ("missing-folder", None, []),
        ("empty-folder", mkdir("feats"), []),
        ("file-not-folder", write("feats", "x"), []),
        ("npy-garbage", write("feats/1.npy", b"garbage"), []),
        ("npy-1d", npy("feats/1.npy", (5,)), []),
        ("npy-3d", npy("feats/1.npy", (2, 3, 4)), []),
        ("npy-nan", npy("feats/1.npy", (3, 8), fill_value=float("nan")), []),
        ("npy-object", npy("feats/1.npy", None), []),
        ("npy-mixed-width", steps(npy("feats/1.npy", (3, 8)), npy("feats/2.npy", (3, 4))), []),
        ("boxes-missing", npy("feats/1.npy", (3, 8)), ["--boxes", "$W/nope"]),
        ("boxes-wrong-width", steps(npy("feats/1.npy", (3, 8)), npy("boxes/1.npy", (3, 5))), ["--boxes", "$W/boxes"]),
        ("boxes-wrong-count", steps(npy("feats/1.npy", (3, 8)), npy("boxes/1.npy", (2, 4))), ["--boxes", "$W/boxes"]),
        ("boxes-nan", steps(npy("feats/1.npy", (3, 8)), npy("boxes/1.npy", (3, 4), fill_value=float("nan"))),
         ["--boxes", "$W/boxes"]),
        ("dtype-bogus", npy("feats/1.npy", (3, 8)), ["--dtype", "int8"]),
        ("box-format-bogus", npy("feats/1.npy", (3, 8)), ["--box-format", "bogus"]),
        ("out-directory", steps(npy("feats/1.npy", (3, 8)), mkdir("f.h5")), []),
    ]:
        add(f"pack-{name}", [*pack, *extra], setup=setup)
    add("pack-ok", pack, "ok", npy("feats/1.npy", (3, 8)))
    add("pack-ok-new-folders", [*_set(pack, "--out", "$W/no/such/f.h5")], "ok", npy("feats/1.npy", (3, 8)))
    add("pack-npy-name-not-an-id", pack, "any", npy("feats/abc.npy", (3, 8)))
    ext = ["data", "extract-features", "--dataset", "$FX/data/dataset.json", "--out", "$W/f.h5", "--weights",
           "$W/w.safetensors", "--quiet"]
    for name, setup, extra in [
        ("weights-missing", None, []),
        ("weights-garbage", write("w.safetensors", b"junk"), []),
        ("weights-dense-checkpoint", copy("runs/dense/checkpoints/best.safetensors", "w.safetensors"), []),
        ("weights-pth-garbage", write("w.pth", b"junk"), ["--weights", "$W/w.pth"]),
        ("weights-pth-list", torch_save("w.pth", lambda: [1, 2]), ["--weights", "$W/w.pth"]),
        ("encoder-bogus", None, ["--encoder", "bogus"]),
        ("image-size-0", None, ["--image-size", "0"]),
        ("grid-negative", None, ["--grid", "-1"]),
        ("batch-size-0", None, ["--batch-size", "0"]),
        ("dtype-bogus", None, ["--dtype", "int8"]),
        ("device-tpu", None, ["--device", "tpu"]),
        ("dataset-missing", None, ["--dataset", "$W/nope.json"]),
        ("dataset-garbage", write("ds.json", "nope"), ["--dataset", "$W/ds.json"]),
    ]:
        add(f"extract-{name}", [*ext, *extra], setup=setup)
    add("ok-scene", scene, "ok")
    add("ok-scene-any-name-new-folders", _set(scene, "--out", "$W/no/such/s.txt"), "ok")  # a PNG, whatever its name
    add("ok-scene-seed-huge", _set(scene, "--seed", HUGE), "ok")
    add("ok-synth-seed-huge", _set(synth, "--seed", HUGE), "ok")
    add("ok-synth-out-empty-is-cwd", _set(synth, "--out", ""), "ok")
    add("ok-synth", synth, "ok")
    add("ok-synth-replace", synth, "ok", copy("data", "d"))
    return cases


def _npy(rel: str, shape: tuple[int, ...] | None, fill_value: float = 0.5) -> Setup:
    def run(w: Path, fx: Path) -> None:
        import numpy as np

        p = w / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        arr = np.array([{"a": 1}], dtype=object) if shape is None else np.full(shape, fill_value, np.float32)
        np.save(p, arr, allow_pickle=shape is None)

    return run


def sweep_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, args: list[str], expect: str = "fail", setup: Setup | None = None) -> None:
        cases.append(Case(f"sweep/{name}", args, expect, setup))

    dry = ["sweep", "--dry-run", "--sweeps-root", "$W/sweeps", "--name", "s", "--set",
           "data.dataset=$FX/data/dataset.json"]
    add("ok-duplicates-dropped", [*dry, "--methods", "dense,dense", "--sparsity", "0.5,,0.5"], "ok")
    add("prune-option-in-base", [*dry, "--set", "prune.method=magnitude"], "any")
    for flag, v in [("--methods", "bogus"), ("--methods", ""), ("--methods", ",,,"),
                    ("--methods", "DENSE"), ("--sparsity", "abc"), ("--sparsity", "nan"), ("--sparsity", "1.5"),
                    ("--sparsity", "-0.1"), ("--sparsity", ""), ("--sparsity", "inf"),
                    ("--steps", "0"), ("--steps", "-1"), ("--steps", HUGE), ("--finetune-steps", "-1"),
                    ("--finetune-steps", HUGE), ("--metrics", "bogus"), ("--metrics", ""), ("--jobs", "0"),
                    ("--jobs", "-1"), ("--jobs", HUGE), ("--launcher", "bogus"), ("--slurm-time", "-1"),
                    ("--slurm-gpus", "-1"), ("--slurm-cpus", "0"), ("--name", "../x"), ("--name", ""),
                    ("--name", "a/b"), ("--name", ".."), ("--sweeps-root", "/proc/sparsecap-probe")]:
        add(f"{flag.strip('-')}={v or 'empty'}", _set(dry, flag, v))
    for name, text in [
        ("missing", None),
        ("garbage", "[[["),
        ("invalid-utf8", b"[sweep]\nmethods = '\xff'\n"),
        ("unknown-section", "[swep]\nmethods = 'dense'\n"),
        ("sweep-methods-int", "[sweep]\nmethods = 5\n"),
        ("sweep-sparsity-string", "[sweep]\nsparsity = 'x'\n"),
        ("sweep-finetune-string", "[sweep]\nfinetune_steps = 'x'\n"),
        ("sweep-unknown-key", "[sweep]\nmethod = 'dense'\n"),
        ("sweep-not-table", "sweep = 5\n"),
        ("train-steps-string", "[train]\nsteps = 'x'\n"),
    ]:
        add(f"config-{name}", [*dry, "--config", "$W/c.toml"], setup=write("c.toml", text) if text else None)
    for item in ("train.step=1", "bogus.x=1", "train.steps=abc", "model.rnn_size=0", "optim.lr=NaN"):
        add(f"set-{item}", [*dry, "--set", item])
    add("root-is-file", _set(dry, "--sweeps-root", "$W/f"), setup=write("f", "x"))
    add("plan-garbage-existing", dry, setup=write("sweeps/s/plan.json", b"\xff{"))
    for v in ("0", "-1"):
        add(f"measure-repeat={v}", ["sweep-measure", "$W/run", "--repeat", v], setup=copy("runs/pruned", "run"))
    add("measure-missing-run", ["sweep-measure", "$W/nope"])
    add("measure-metrics-bogus", ["sweep-measure", "$W/run", "--metrics", "bogus"], setup=copy("runs/pruned", "run"))
    add("ok-dry-run", dry, "ok")
    add("ok-dry-run-again", [*dry, "--methods", "dense,magnitude", "--sparsity", "0.5"], "ok")
    return cases


def doctor_cases() -> list[Case]:
    return [
        Case("models/unknown-option", ["models", "--bogus"]),
        Case("models/extra-argument", ["models", "extra"]),
        Case("models/ok-json", ["models", "--json"], "ok"),
        Case("doctor/unknown-option", ["doctor", "--bogus"]),
        Case("doctor/extra-argument", ["doctor", "extra"]),
        Case("doctor/json-value", ["doctor", "--json=yes"]),
    ]


def all_cases() -> list[Case]:
    """Every case, in a fixed order (ids are unique)."""
    cases = [*global_cases(), *train_cases(), *prune_cases(), *caption_cases(), *eval_cases(), *inspect_cases(),
             *export_cases(), *monitor_cases(), *data_cases(), *sweep_cases(), *doctor_cases()]
    seen: Counter[str] = Counter()
    for case in cases:  # make ids unique (a flag given twice with different bases)
        seen[case.id] += 1
        if seen[case.id] > 1:
            case.id = f"{case.id}#{seen[case.id]}"
    return cases


# -------------------------------------------------------------------------------------------------- fixtures


def build_fixtures(root: Path, exe: str = EXE, log: Callable[[str], None] = print, minimal: bool = False) -> Path:
    """The shared fixtures under ``root/fx``: data/, runs/dense, runs/pruned, sparse.safetensors, sweeps/sw (a
    dry-run sweep), image.png (``minimal``: only data/, runs/dense and image.png, for cases that name nothing else)."""
    from PIL import Image

    from sparsecap_engine.data.synthetic import generate_synthetic

    fx = root / "fx"
    fx.mkdir(parents=True)
    t0 = time.perf_counter()
    dataset = generate_synthetic(fx / "data", images=40, size=32, seed=5)
    env = probe_env(root)

    def sc(*args: str) -> None:
        res = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=900,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise RuntimeError(f"fixture `sparsecap {' '.join(args)}` failed:\n{res.stdout}\n{res.stderr}")

    sc("train", "--dataset", str(dataset), "--runs-root", str(fx / "runs"), "--name", "dense", "--steps", "4",
       "--val-every", "4", *TINY)
    if not minimal:
        sc("prune", "--method", "magnitude", "--sparsity", "0.5", "--from", str(fx / "runs" / "dense"),
           "--runs-root", str(fx / "runs"), "--name", "pruned", "--steps", "2", "--val-every", "2", "--quiet")
        sc("export", str(fx / "runs" / "pruned"), "--out", str(fx / "sparse.safetensors"))
        sc("sweep", "--dry-run", "--sweeps-root", str(fx / "sweeps"), "--name", "sw", "--methods", "dense,magnitude",
           "--sparsity", "0.5", "--set", f"data.dataset={dataset}")
    Image.new("RGB", (48, 40), (30, 90, 200)).save(fx / "image.png")
    for lock in fx.rglob(".lock"):
        lock.unlink()
    log(f"fixtures built in {time.perf_counter() - t0:.0f} s: {fx}")
    return fx


def probe_env(root: Path) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SPARSECAP_CACHE": str(root / "cache"),
           "MPLCONFIGDIR": str(root / "mpl"), "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "")}
    env.pop("FORCE_COLOR", None)
    return env


# ---------------------------------------------------------------------------------------------- run, classify


@dataclass
class Outcome:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    changed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def snapshot(*roots: Path) -> dict[str, tuple]:
    """(size, mtime) of every file and the existence of every folder under ``roots`` (``.lock`` files ignored)."""
    out: dict[str, tuple] = {}
    for root in roots:
        for dirpath, _dirs, filenames in os.walk(root):
            out[dirpath + "/"] = ("dir",)
            for name in filenames:
                if name == ".lock":
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                out[path] = (st.st_size, st.st_mtime_ns, stat.S_IFMT(st.st_mode))
    return out


def diff(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    added = [f"+{p}" for p in after if p not in before]
    removed = [f"-{p}" for p in before if p not in after]
    changed = [f"~{p}" for p in after if p in before and after[p] != before[p]]
    return sorted(added + removed + changed)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BOX = re.compile(r"^[\s│╭╰─┃┏┗━]*(?:Error)?[\s│╮╯─┃┓┛━]*$")


def error_lines(stderr: str) -> list[str]:
    """The non-empty stderr lines, with typer's usage block (``Usage:``, ``Try …``, a boxed ``Error``) as one line."""
    lines = [ln.rstrip() for ln in ANSI.sub("", stderr).splitlines() if ln.strip()]
    head = 2 if len(lines) >= 3 and lines[0].startswith("Usage: ") and lines[1].startswith("Try '") else 0
    box = lines[head:]
    if len(box) >= 3 and box[0].lstrip().startswith("╭─ Error") and all(
            ln.lstrip().startswith(("│", "╭", "╰")) for ln in box):
        message = " ".join(ln.strip(" │") for ln in box if not BOX.match(ln)).strip()
        return [f"usage: {message}"]
    return lines


MEMORY = ("MemoryError", "can't allocate memory", "std::bad_alloc", "Cannot allocate memory", "out of memory")


def classify(case: Case, out: Outcome) -> tuple[str, str]:
    """(class, first error line) of one outcome; see the module docstring for the classes."""
    lines = error_lines(out.stderr)
    first = lines[0] if lines else ""
    text = ANSI.sub("", out.stderr)
    if out.timed_out:
        return "hang", first
    if out.returncode is None or out.returncode < 0 or out.returncode == 137 or any(m in text for m in MEMORY):
        return "killed", first or f"signal {-(out.returncode or 0)}"
    if "Traceback (most recent call last)" in text:
        tb = [ln for ln in text.splitlines() if ln.strip()]
        return "traceback", tb[-1] if tb else first
    if "internal error" in text:
        return "internal-error", next((ln for ln in lines if "internal error" in ln), first)
    if case.expect == "ok":
        return ("ok", first) if out.returncode == 0 else ("refused", first)
    if out.returncode == 0:
        if case.expect == "any":
            return "ok", first
        return "accepted", (out.stdout.strip().splitlines() or [""])[0][:200]
    if out.changed:
        return "wrote-files", f"{first}  [{', '.join(out.changed[:3])}{' …' if len(out.changed) > 3 else ''}]"
    if out.returncode not in (1, 2):
        return "exit-code", f"exit {out.returncode}: {first}"
    if len(lines) != 1:
        return "multi-line", f"{len(lines)} lines: {first}"
    return "ok", first


def _limits(mem_bytes: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return preexec


def run_case(case: Case, fx: Path, scratch: Path, exe: str = EXE, timeout: float = 120.0, mem_gb: float = 6.0,
             env: dict[str, str] | None = None, keep: bool = False) -> tuple[Outcome, list[str]]:
    """Set up and run one case in a fresh folder under ``scratch``; returns its outcome and the command line."""
    work = Path(tempfile.mkdtemp(prefix=re.sub(r"[^\w]+", "-", case.id)[:60] + "-", dir=scratch))
    if case.setup is not None:
        case.setup(work, fx)
    argv = [exe, *case.argv(work, fx)]
    before = snapshot(work, fx)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=work, env=env or probe_env(scratch), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_limits(int(mem_gb * 2**30)))
    timed_out = False
    try:
        out_b, err_b = proc.communicate(timeout=case.timeout or timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out_b, err_b = proc.communicate()
    seconds = time.perf_counter() - t0
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children a command left behind
    except ProcessLookupError:
        pass
    after = snapshot(work, fx)
    outcome = Outcome(proc.returncode, out_b.decode(errors="replace"), err_b.decode(errors="replace"), timed_out,
                      diff(before, after), seconds)
    if not keep:
        shutil.rmtree(work, onerror=_unlock_and_retry)
    return outcome, argv


def _unlock_and_retry(func: Callable[..., Any], path: str, _exc: Any) -> None:
    """rmtree's error handler: a chmod-000 folder (an "unreadable" case) is opened up, then removed again."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            shutil.rmtree(path, ignore_errors=True)
        else:
            func(path)
    except OSError:
        pass


def restore(fx: Path, pristine: Path) -> None:
    shutil.rmtree(fx, ignore_errors=True)
    shutil.copytree(pristine, fx, symlinks=True)


@dataclass
class Result:
    id: str
    command: str
    expect: str
    cls: str
    detail: str
    returncode: int | None
    seconds: float
    line: str
    changed: list[str]


def probe(cases: Iterable[Case], root: Path, pristine: Path, jobs: int = 1, exe: str = EXE, timeout: float = 120.0,
          mem_gb: float = 6.0, log: Callable[[str], None] = print) -> list[Result]:
    """Run ``cases`` (``jobs`` at once, each worker with its own copy of the fixtures)."""
    cases = list(cases)
    scratch = root / "cases"
    scratch.mkdir(exist_ok=True)
    workers = max(1, jobs)
    free = [root / f"fx-{i}" for i in range(workers)]
    for fx in free:
        shutil.copytree(pristine, fx, symlinks=True)
    import threading

    lock = threading.Lock()
    results: list[Result | None] = [None] * len(cases)
    done = [0]

    def one(index: int) -> None:
        with lock:
            fx = free.pop()
        try:
            case = cases[index]
            out, _ = run_case(case, fx, scratch, exe, timeout, mem_gb)
            cls, detail = classify(case, out)
            fx_changed = [c for c in out.changed if c[1:].startswith(str(fx))]
            if fx_changed:
                restore(fx, pristine)
            res = Result(case.id, case.command, case.expect, cls, detail, out.returncode, round(out.seconds, 2),
                         case.line(), out.changed[:20])
            results[index] = res
            with lock:
                done[0] += 1
                mark = "  " if cls == "ok" else "!!"
                log(f"{mark} [{done[0]:3d}/{len(cases)}] {cls:14s} {out.seconds:5.1f}s {case.id}"
                    + ("" if cls == "ok" else f"\n      {detail[:300]}"))
        finally:
            with lock:
                free.append(fx)

    if workers == 1:
        for i in range(len(cases)):
            one(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(len(cases))))
    return [r for r in results if r is not None]


def summary(results: list[Result]) -> str:
    counts: Counter[tuple[str, str]] = Counter((r.command, r.cls) for r in results)
    used = [c for c in CLASSES if any(counts[(cmd, c)] for cmd in COMMANDS)] or ["ok"]
    width = max(len(c) for c in used) + 1
    head = f"{'command':9s} {'cases':>6s} " + " ".join(f"{c:>{width}s}" for c in used)
    rows = [head, "-" * len(head)]
    for cmd in COMMANDS:
        n = sum(1 for r in results if r.command == cmd)
        if n:
            rows.append(f"{cmd:9s} {n:6d} " + " ".join(f"{counts[(cmd, c)] or '':>{width}}" for c in used))
    total = Counter(r.cls for r in results)
    rows.append("-" * len(head))
    rows.append(f"{'total':9s} {len(results):6d} " + " ".join(f"{total[c] or '':>{width}}" for c in used))
    bad = [r for r in results if r.cls != "ok"]
    if bad:
        rows.append(f"\n{len(bad)} case(s) not ok:")
        for r in bad:
            rows.append(f"  [{r.cls}] {r.id} (expect {r.expect}, exit {r.returncode})\n    $ {r.line}\n"
                        f"    {r.detail[:400]}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filter", default="", help="Only cases whose id contains this substring (comma: any of).")
    ap.add_argument("--list", action="store_true", help="List the cases (id, expected outcome, command) and exit.")
    ap.add_argument("--json", type=Path, help="Write every case's result to this JSON file.")
    ap.add_argument("--jobs", type=int, default=1, help="Cases run at once (default 1).")
    ap.add_argument("--timeout", type=float, default=120.0, help="Seconds per case before it counts as a hang.")
    ap.add_argument("--mem-gb", type=float, default=6.0, help="Address-space limit per case (RLIMIT_AS), GB.")
    ap.add_argument("--exe", default=EXE, help="The sparsecap executable.")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]  # non-UTF-8 file names
    wanted = [f for f in args.filter.split(",") if f]
    cases = [c for c in all_cases() if not wanted or any(f in c.id for f in wanted)]
    if args.list:
        for c in cases:
            print(f"{c.id:60s} {c.expect:4s} {c.line()}")
        per = Counter(c.command for c in cases)
        print(f"{len(cases)} cases: " + ", ".join(f"{cmd} {per[cmd]}" for cmd in COMMANDS if per[cmd]))
        return 0
    if not cases:
        print("no case matches --filter", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="probe-bad-input-") as tmp:
        root = Path(tmp)
        pristine = build_fixtures(root, args.exe)
        t0 = time.perf_counter()
        results = probe(cases, root, pristine, args.jobs, args.exe, args.timeout, args.mem_gb)
        elapsed = time.perf_counter() - t0
    print()
    print(summary(results))
    print(f"\n{len(results)} cases in {elapsed:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 1 if any(r.cls != "ok" for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
