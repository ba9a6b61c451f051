"""Judging demo captions of fresh scenes (colour + shape of every object, nothing invented) and the benchmark script."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sparsecap_engine.data.scene_check import SEVERAL, find_mentions, fresh_scene, judge_caption
from sparsecap_engine.data.scene_grammar import describe_scene
from sparsecap_engine.data.scenes import SceneObject, sample_scene
from sparsecap_engine.data.synthetic import render_sample


def obj(color: str, shape: str, size: str = "large") -> SceneObject:
    return SceneObject(shape, color, size, (0, 0, 10, 10))


BALL_TRIANGLE = (obj("blue", "circle"), obj("purple", "triangle"))  # the README's scene (seed 12345)


@pytest.mark.parametrize(
    "caption",
    [
        "a blue ball to the left of a purple triangle",
        "the blue disc is left of the purple triangle",
        "a purple triangle and a big blue circle on a white background",
        "there is a small blue ball, a large purple triangle",
        "A Blue circle, a purple triangle",  # case and commas do not matter
    ],
)
def test_right_captions_with_synonyms(caption: str) -> None:
    v = judge_caption(BALL_TRIANGLE, caption)
    assert v.right and v.objects_right == [True, True] and v.false_mentions == []


def test_issue_caption_is_wrong_twice() -> None:
    """The issue's demo caption: the ball is missed and two blue triangles are invented."""
    v = judge_caption(BALL_TRIANGLE, "a blue triangle and a blue triangle")
    assert not v.right and v.objects_right == [False, False]
    assert v.false_mentions == ["2 x blue triangle (the scene has 0)"]


def test_wrong_colour() -> None:
    v = judge_caption(BALL_TRIANGLE, "a red ball to the left of a purple triangle")
    assert not v.right and v.objects_right == [False, True] and len(v.false_mentions) == 1


def test_object_without_colour_or_shape_is_not_named() -> None:
    for caption in ("a ball to the left of a purple triangle", "a blue shape and a purple triangle", "two shapes"):
        v = judge_caption(BALL_TRIANGLE, caption)
        assert not v.right and not v.objects_right[0] and v.false_mentions == []


def test_hallucinated_extra_object() -> None:
    v = judge_caption(BALL_TRIANGLE, "a blue ball, a purple triangle and a green square")
    assert v.objects_right == [True, True] and not v.right
    assert v.false_mentions == ["1 x green square (the scene has 0)"]


def test_extra_bare_shape_or_colour_is_false() -> None:
    assert judge_caption(BALL_TRIANGLE, "a blue ball, a purple triangle and a rhombus").false_mentions == ["rhombus"]
    assert judge_caption(BALL_TRIANGLE, "a blue ball, a purple triangle, a red object").false_mentions == ["red object"]
    # a bare shape or colour that the scene has is fine (it just names nothing by colour + shape)
    assert judge_caption(BALL_TRIANGLE, "a blue ball and a purple triangle above a circle").right


def test_counts() -> None:
    scene = (obj("red", "circle"), obj("green", "square", "small"), obj("red", "circle", "small"))
    assert judge_caption(scene, "two red circles and a green box").right
    assert judge_caption(scene, "there is a green block and two red discs on a grey background").right
    assert judge_caption(scene, "a red ball, a small green square and a little red circle").right  # listing
    assert judge_caption(scene, "red balls and a green square").right  # bare plural: all of them
    one = judge_caption(scene, "a red circle and a green square")
    assert one.objects_right == [True, True, False] and not one.right  # one red circle of two named
    three = judge_caption(scene, "three red circles and a green square")
    assert three.objects_right == [True, True, True] and three.false_mentions == ["3 x red circle (the scene has 2)"]
    plural = judge_caption((obj("red", "circle"),), "red circles")
    assert not plural.right and plural.false_mentions == ["red circles (several; the scene has 1)"]


def test_plurals_of_every_synonym() -> None:
    scene = (obj("orange", "square"), obj("orange", "square"), obj("yellow", "diamond"), obj("yellow", "diamond"))
    assert judge_caption(scene, "two orange boxes and two yellow rhombuses").right
    assert judge_caption(scene, "two orange blocks and two big yellow diamonds").right


def test_find_mentions() -> None:
    got = [(m.color, m.shape, m.count, m.text) for m in find_mentions("there are two small red balls above a blue")]
    assert got == [("red", "circle", 2, "two red balls"), ("blue", None, 1, "blue")]
    assert [m.count for m in find_mentions("red circles, one big green object, a square")] == [SEVERAL, 1, 1]
    assert find_mentions("only one object on a white background") == []  # no colour, no shape
    assert find_mentions("a a a a") == []


def test_truthful_grammar_captions_never_contradict_their_scene() -> None:
    """Every caption the grammar writes is true, so the judge must find no false mention in any of them."""
    for i in range(300):
        rng = random.Random(f"judge-test:{i}")
        scene = sample_scene(rng, 64)
        for caption in describe_scene(scene, rng):
            assert judge_caption(scene.objects, caption).false_mentions == [], caption


def test_fresh_scene_is_what_data_scene_renders(tmp_path: Path) -> None:
    for seed in (12345, 12346):
        path, captions = render_sample(tmp_path / f"ref-{seed}.png", seed, 96)
        scene, image = fresh_scene(seed, 96)
        image.save(tmp_path / "ours.png")
        assert (tmp_path / "ours.png").read_bytes() == path.read_bytes()
        assert judge_caption(scene.objects, captions[0]).false_mentions == []


# ---------------------------------------------------------------------------------------------------- the script


def _script() -> ModuleType:
    path = Path(__file__).parents[1] / "benchmarks" / "demo_scenes.py"
    spec = importlib.util.spec_from_file_location("demo_scenes", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _FakeCaptioner:
    """Captions scene PNGs by seed from a table instead of a model (no training in these tests)."""

    meta = {"step": 7}

    def __init__(self, by_seed: dict[int, str]) -> None:
        self.by_seed = by_seed

    def caption(self, paths: list[Path], opts: Any) -> list[str]:
        assert opts.method == "greedy" and all(p.is_file() for p in paths)
        return [self.by_seed[int(p.stem.split("-")[1])] for p in paths]


class _FakeRun:
    def checkpoint(self, kind: str) -> Path:
        return Path("r/checkpoints") / f"{kind}.safetensors"


def test_script_table_json_and_pngs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = _script()
    fake = _FakeCaptioner(
        {12345: "a blue ball left of a purple triangle", 12346: "a blue triangle and a blue triangle"}
    )
    monkeypatch.setattr(mod.Captioner, "load", lambda *a, **k: fake)
    monkeypatch.setattr(mod.RunDir, "open", lambda run: _FakeRun())
    assert mod.main(["--run", "r", "--n", "2", "--size", "64", "--out", str(tmp_path / "png")]) == 0
    table = capsys.readouterr().out
    assert (
        "1 of 2 scenes right; object-level 2 of 4; 1 of 2 captions name nothing false" in table
        and "false: 2 x blue triangle" in table
    )
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["scene-12345.png", "scene-12346.png"]

    assert mod.main(["--run", "r", "--n", "2", "--size", "64", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["n"], result["scenes_right"], result["objects_right"], result["objects_total"]) == (2, 1, 2, 4)
    assert [r["seed"] for r in result["scenes"]] == [12345, 12346] and result["scenes"][0]["right"]
    assert [o["shape"] for o in result["scenes"][0]["objects"]] == ["circle", "triangle"]
