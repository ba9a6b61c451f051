"""``sparsecap models``: every family and preset from the one registry, with true parameter counts; ``-h`` works."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from sparsecap_cli.main import app
from sparsecap_engine.models.presets import BUILTIN_PRESETS, DEFAULT_PRESET
from sparsecap_engine.models.registry import PRESETS, build_model, preset

runner = CliRunner()


def test_models_lists_every_preset_with_its_real_parameter_count():
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["preset"]: r for r in json.loads(res.stdout)}
    assert set(rows) == set(PRESETS) == set(BUILTIN_PRESETS)
    small = rows["ud-small"]
    model = build_model(preset("ud-small"), 10001)  # allocated for real here: the meta-device count must agree
    assert small["params"] == sum(p.numel() for p in model.parameters())
    assert (small["family"], small["encoder"], small["width"], small["default_for"]) == ("updown", "grid-cnn", 256,
                                                                                          "updown")
    assert rows["acort-base"]["vocab"] == 771 and rows["acort-base"]["tokenizer"] == "radix 768"
    assert {r["default_for"] for r in rows.values() if r["default_for"]} == set(DEFAULT_PRESET)
    assert rows["ud-paper"]["params"] > 50_000_000  # the paper's Up-Down at a COCO vocabulary
    table = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert table.exit_code == 0 and "ud-small *" in table.stdout and "53.2 M" in table.stdout


def test_short_help_and_workflow_order():
    res = runner.invoke(app, ["-h"], env={"COLUMNS": "100"})
    assert res.exit_code == 0
    order = [res.stdout.index(f"│ {name} ") for name in ("train", "prune", "eval", "caption", "inspect", "export",
                                                          "monitor", "doctor", "data")]
    assert order == sorted(order)
    assert runner.invoke(app, ["prune", "-h"]).exit_code == 0


def test_any_model_module_imported_first_sees_the_whole_zoo():
    """No import-order trap: importing the presets (or any model module) first registers every family."""
    for module in ("sparsecap_engine.models.presets", "sparsecap_engine.models.registry",
                   "sparsecap_engine.models.updown"):
        code = (f"import {module}; from sparsecap_engine.models.registry import MODELS, PRESETS; "
                "print(sorted(MODELS), len(PRESETS))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"['ort', 'transformer', 'updown'] {len(BUILTIN_PRESETS)}"


def test_caption_without_a_run_uses_the_bundled_demo_model(tmp_path):
    """A fresh install captions a synthetic scene with the packaged supermask model (no --run, no --checkpoint)."""
    from sparsecap_engine.checkpoint.model_io import load_model
    from sparsecap_engine.data.synthetic import render_sample
    from sparsecap_engine.pretrained import BUNDLED, bundled_path

    path = bundled_path("demo")
    assert path.is_file() and path.stat().st_size < 300_000  # a few hundred KB
    model, vocab, meta = load_model(path)
    assert meta["sparsity"]["sparsity"] > 0.94 and model.config["name"] == "updown"
    scene, truth = render_sample(tmp_path / "scene.png", seed=7)
    res = runner.invoke(app, ["caption", str(scene), "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    words = row["caption"].split()
    assert len(words) >= 3 and set(words) <= set(vocab.itos)  # a caption in the model's own words
    from sparsecap_engine.data.scene_check import fresh_scene, judge_caption
    from sparsecap_engine.decoding.api import DecodeOptions
    from sparsecap_engine.inference import Captioner

    captioner = Captioner.load(None, path, "cpu", "auto")  # what `caption` loads: 20 fresh scenes, judged
    scenes, paths = [], []
    for seed in range(20):
        scene_, image = fresh_scene(seed, 256)
        image.save(tmp_path / f"{seed}.png")
        scenes.append(scene_)
        paths.append(tmp_path / f"{seed}.png")
    verdicts = [judge_caption(s.objects, c) for s, c in zip(
        scenes, captioner.caption(paths, DecodeOptions(max_len=20).check()), strict=True)]
    assert sum(v.right for v in verdicts) >= 11 and sum(v.truthful for v in verdicts) >= 14  # measured 13 and 16
    copy = runner.invoke(app, ["export", str(path), "-o", str(tmp_path / "copy.safetensors"), "--values", "fp16"])
    assert copy.exit_code == 0, copy.output  # -o as in `data pack-features`
    assert load_model(tmp_path / "copy.safetensors")[2]["sparsity"]["sparsity"] > 0.94
    listing = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert "bundled checkpoint demo" in listing.stdout and BUNDLED["demo"]["about"] in listing.stdout


def test_caption_process_ends_fast_with_all_its_output(tmp_path):
    """The real executable's `caption` ends right after flushing its output (no interpreter teardown): the JSON is
    complete and the exit status 0; a failure still exits non-zero with its one-line error."""
    import subprocess
    import sys

    from sparsecap_cli.main import _fast_exit_after
    from sparsecap_engine.data.synthetic import render_sample

    scenes = [render_sample(tmp_path / f"s{i}.png", seed=i)[0] for i in range(3)]
    cmd = [sys.executable, "-m", "sparsecap_cli", "caption", *map(str, scenes), "--json", "--beam", "3",
           "--n-best", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["image"] for r in rows] == list(map(str, scenes)) and all(len(r["captions"]) == 2 for r in rows)
    bad = subprocess.run([*cmd[:4], str(tmp_path / "missing.png")], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "error" in bad.stderr and "Traceback" not in bad.stderr
    assert _fast_exit_after(["caption", "x.png"]) and not _fast_exit_after(["caption", "x.png", "--debug"])
    assert not _fast_exit_after(["train", "--steps", "2"]) and not _fast_exit_after(["--help"])


def test_shape_only_builds_match_real_ones_for_every_preset():
    """``build_shapes`` (meta device, initialisers skipped: the fast start of `caption`) has every preset's exact
    parameter and buffer shapes, and flags (a frozen encoder stays frozen)."""
    import torch

    from sparsecap_engine.models.registry import build_shapes

    for name in ("ud-small", "ort-xsmall", "transformer-small", "acort-small"):
        cfg = {k: v for k, v in preset(name).items() if k not in ("tokenizer", "radix_base")}
        real, shapes = build_model(cfg, 57), build_shapes(cfg, 57)
        want = {k: (tuple(v.shape), v.dtype) for k, v in real.state_dict().items()}
        got = {k: (tuple(v.shape), v.dtype) for k, v in shapes.state_dict().items()}
        assert got == want, name
        assert [p.requires_grad for p in shapes.parameters()] == [p.requires_grad for p in real.parameters()]
        assert all(p.is_meta for p in shapes.parameters())
    with torch.device("meta"):
        assert torch.empty(2).normal_().is_meta  # the mode is gone after the build: meta ops behave as usual
