"""The synthetic dataset: determinism, layout, truthful captions, safe writing, the default dataset and the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sparsecap_cli.commands import data as data_cmd
from sparsecap_engine.data import synthetic
from sparsecap_engine.data.scene_grammar import describe_scene
from sparsecap_engine.data.scenes import (
    COLORS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    image_position,
    render_scene,
    sample_scene,
    spatial_relations,
)
from sparsecap_engine.data.synthetic import generate_synthetic
from sparsecap_engine.errors import DataError, UsageError

N = 30


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny dataset shared by the read-only tests."""
    return generate_synthetic(tmp_path_factory.mktemp("syn") / "ds", images=N, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = generate_synthetic(tmp_path / "a", images=12, seed=7)
    b = generate_synthetic(tmp_path / "b", images=12, seed=7)
    files_a, files_b = _files(a.parent), _files(b.parent)
    assert len(files_a) == 14 and files_a == files_b  # 12 images, dataset.json, features.h5


def test_different_seed_differs(tmp_path: Path) -> None:
    a = generate_synthetic(tmp_path / "a", images=12, seed=1)
    b = generate_synthetic(tmp_path / "b", images=12, seed=2)
    assert a.read_bytes() != b.read_bytes()
    assert (a.parent / "images" / "000000.png").read_bytes() != (b.parent / "images" / "000000.png").read_bytes()


def test_layout_and_schema(dataset: Path) -> None:
    data = json.loads(dataset.read_text())
    assert data["dataset"] == "synthetic" and len(data["images"]) == N
    sentids = []
    for i, entry in enumerate(data["images"]):
        assert entry["imgid"] == entry["cocoid"] == i and entry["filepath"] == "images"
        with Image.open(dataset.parent / entry["filepath"] / entry["filename"]) as img:
            assert img.size == (entry["width"], entry["height"]) == (64, 64) and img.mode == "RGB"
        assert 1 <= len(entry["objects"]) <= 4
        for obj in entry["objects"]:
            x1, y1, x2, y2 = obj["box"]
            assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
            assert obj["color"] in COLORS and obj["shape"] in SHAPES and obj["size"] in SIZES
        raws = [s["raw"] for s in entry["sentences"]]
        assert len(set(raws)) == len(raws) >= 5
        for s in entry["sentences"]:
            assert s["raw"] == s["raw"].lower() and s["imgid"] == i
            assert s["tokens"] == s["raw"].replace(",", " ").split()
        assert entry["sentids"] == [s["sentid"] for s in entry["sentences"]]
        sentids += entry["sentids"]
    assert len(set(sentids)) == len(sentids)


def test_split_counts(tmp_path: Path, dataset: Path) -> None:
    splits = [e["split"] for e in json.loads(dataset.read_text())["images"]]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (24, 3, 3)
    path = generate_synthetic(tmp_path / "s", images=10, val_fraction=0.2, test_fraction=0.0)
    splits = [e["split"] for e in json.loads(path.read_text())["images"]]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (8, 2, 0)


def test_many_scenes_have_five_distinct_captions() -> None:
    for i in range(300):
        rng = random.Random(i)
        captions = describe_scene(sample_scene(rng, 64), rng)
        assert len(set(captions)) == 5


# ------------------------------------------------------------------------------------------------- truthfulness


def test_spatial_relations_hand_checked() -> None:
    top, bottom = (20, 2, 40, 22), (20, 40, 40, 60)
    assert spatial_relations(top, bottom) == ["above"]
    assert spatial_relations(bottom, top) == ["below"]
    left, right = (2, 20, 18, 36), (26, 22, 42, 38)
    assert spatial_relations(left, right) == ["left", "next"]
    assert spatial_relations(right, left) == ["right", "next"]
    far_right = (48, 20, 62, 34)
    assert spatial_relations(left, far_right) == ["left"]  # same row but too far apart for "next to"
    assert set(spatial_relations((2, 2, 14, 14), (40, 40, 60, 60))) == {"above", "left"}  # diagonal: both hold
    # mostly to the side and only a little higher: "left", not "above"
    assert spatial_relations((2, 2, 14, 14), (40, 16, 52, 28)) == ["left"]
    # overlapping boxes: no relation is stated
    assert spatial_relations((10, 10, 30, 30), (15, 15, 35, 35)) == []


def test_image_position() -> None:
    assert image_position((2, 2, 12, 12), 64, 64) == ("left", "top")
    assert image_position((50, 50, 62, 62), 64, 64) == ("right", "bottom")
    assert image_position((26, 26, 38, 38), 64, 64) == ("centre", "centre")
    assert image_position((20, 2, 30, 12), 64, 64) == (None, "top")  # centre x = 25/64: borderline


def _captions(scene: Scene, runs: int = 60) -> list[str]:
    return [c for seed in range(runs) for c in describe_scene(scene, random.Random(seed))]


def test_vertical_pair_captions_are_true() -> None:
    red = SceneObject("circle", "red", "small", (26, 2, 38, 14))
    blue = SceneObject("square", "blue", "large", (21, 38, 43, 60))
    captions = _captions(Scene(64, 64, "white", (red, blue)))
    first_words = {"red", "small", "little", "tiny"}, {"blue", "large", "big"}
    seen_relation = False
    for text in captions:
        words = text.replace(",", "").split()
        assert not {"left", "right", "next", "beside", "three", "four", "one"} & set(words), text
        relations = (("above", True), ("over", True), ("below", False), ("under", False), ("beneath", False))
        for rel, upper_first in relations:
            if rel in words:
                seen_relation = True
                before = set(words[: words.index(rel)])
                assert before & first_words[0 if upper_first else 1], text
                assert not before & first_words[1 if upper_first else 0], text
        if "background" in words:
            assert "white" in words
        if "top" in words:  # position captions name one object: only the red one is at the top
            assert not first_words[1] & set(words), text
        if "bottom" in words:
            assert not first_words[0] & set(words), text
    assert seen_relation


def test_horizontal_pair_and_counts_are_true() -> None:
    a = SceneObject("triangle", "green", "small", (4, 26, 16, 38))
    b = SceneObject("triangle", "green", "small", (22, 26, 34, 38))
    c = SceneObject("diamond", "orange", "large", (42, 22, 62, 42))
    captions = _captions(Scene(64, 64, "grey", (a, b, c)))
    for text in captions:
        words = text.replace(",", "").split()
        assert not {"above", "over", "below", "under", "beneath", "one", "four"} & set(words), text
        if "two" in words:  # only ever the two green triangles
            after = words[words.index("two") + 1 :]
            assert after[0] == "triangles" or after[:2] == ["green", "triangles"], text
        if "orange" in words and ("left" in words or "right" in words):
            rel = "left" if "left" in words else "right"
            assert (words.index("orange") < words.index(rel)) == (rel == "right"), text
    assert any(c.startswith("three") or c.startswith("there are three") for c in captions)


def test_render_draws_objects_in_their_boxes() -> None:
    obj = SceneObject("square", "blue", "large", (10, 10, 30, 30))
    img = render_scene(Scene(64, 64, "white", (obj,)), random.Random(0))
    inside, outside = img.getpixel((20, 20)), img.getpixel((50, 50))
    assert all(abs(v - c) <= 12 for v, c in zip(inside, COLORS["blue"], strict=True))
    assert all(v >= 235 for v in outside)


# ---------------------------------------------------------------------------------------------- writing safely


def test_refuses_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="mine"):
        generate_synthetic(out, images=3)
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_replaces_previous_synthetic_and_fills_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    generate_synthetic(out, images=3, seed=1)
    path = generate_synthetic(out, images=5, seed=2)
    assert len(json.loads(path.read_text())["images"]) == 5
    assert len(list((out / "images").iterdir())) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(scene: Scene, rng: random.Random) -> Image.Image:
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("boom")
        return render_scene(scene, rng)

    monkeypatch.setattr(synthetic, "render_scene", broken)
    with pytest.raises(RuntimeError):
        generate_synthetic(tmp_path / "ds", images=5)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments() -> None:
    with pytest.raises(UsageError):
        generate_synthetic(Path("unused"), images=0)
    with pytest.raises(UsageError):
        generate_synthetic(Path("unused"), size=8)
    with pytest.raises(UsageError):
        generate_synthetic(Path("unused"), val_fraction=0.6, test_fraction=0.5)


def test_default_dataset_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARSECAP_CACHE", str(tmp_path))
    monkeypatch.setattr(synthetic, "DEFAULT_IMAGES", 6)
    out = synthetic.default_dataset_dir()
    assert out.parent == tmp_path and f"v{synthetic.GENERATOR_VERSION}" in out.name
    seen: list[tuple[int, int | None]] = []
    path = synthetic.ensure_default_dataset(progress=lambda task, done, total, **info: seen.append((done, total)))
    assert path == out / "dataset.json" and seen[-1] == (6, 6)
    mtime = path.stat().st_mtime_ns
    monkeypatch.setattr(synthetic, "_generate", lambda *a, **k: pytest.fail("generated twice"))
    assert synthetic.ensure_default_dataset() == path and path.stat().st_mtime_ns == mtime


def test_race_loser_keeps_winner(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    winner = generate_synthetic(out, images=3, seed=1).read_bytes()
    # a second process that started before `out` existed publishes without replacing
    tmp = tmp_path / ".ds.tmp-x"
    tmp.mkdir()
    (tmp / "dataset.json").write_text('{"dataset": "synthetic", "images": []}')
    synthetic._publish(tmp, out, replace=False)
    assert (out / "dataset.json").read_bytes() == winner and not tmp.exists()


# ----------------------------------------------------------------------------------------------------------- CLI


def test_cli_synth(tmp_path: Path) -> None:
    result = CliRunner().invoke(data_cmd.app, ["synth", "--out", str(tmp_path / "ds"), "--images", "10", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "8 train / 1 val / 1 test images, 50 captions" in result.output
    assert (tmp_path / "ds" / "dataset.json").is_file()


def test_cli_synth_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x")
    result = CliRunner().invoke(data_cmd.app, ["synth", "--out", str(tmp_path), "--images", "3"])
    assert isinstance(result.exception, DataError)
