"""Karpathy split JSON loader on small fixture files (and on a generated synthetic dataset)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparsecap_engine.data.karpathy import ImageRecord, load_karpathy, split_records, tokenize_raw
from sparsecap_engine.data.synthetic import generate_synthetic
from sparsecap_engine.errors import DataError, UsageError


def _sentence(raw: str, tokens: list[str] | None = None) -> dict[str, Any]:
    return {"tokens": tokens if tokens is not None else raw.lower().split(), "raw": raw}


def _coco_like() -> dict[str, Any]:
    return {
        "dataset": "coco",
        "images": [
            {
                "filepath": "val2014",
                "filename": "COCO_val2014_000000391895.jpg",
                "imgid": 0,
                "cocoid": 391895,
                "split": "test",
                "sentences": [_sentence("A man riding a bike.", ["a", "man", "riding", "a", "bike"])],
            },
            {
                "filepath": "val2014",
                "filename": "COCO_val2014_000000522418.jpg",
                "imgid": 1,
                "cocoid": 522418,
                "split": "restval",
                "sentences": [_sentence("A woman's knife, on a cutting-board!", ["a", "womans", "knife"])],
            },
            {
                "filepath": "train2014",
                "filename": "COCO_train2014_000000057870.jpg",
                "imgid": 2,
                "cocoid": 57870,
                "split": "train",
                "sentences": [_sentence("Dining room"), _sentence("A table")],
                "width": 640,
                "height": 480,
                "objects": [{"box": [1, 2, 30.5, 40]}],
            },
            {
                "filepath": "val2014",
                "filename": "COCO_val2014_000000184613.jpg",
                "imgid": 3,
                "cocoid": 184613,
                "split": "val",
                "sentences": [_sentence("A boy")],
            },
        ],
    }


def _write(tmp_path: Path, data: Any, name: str = "dataset_test.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_records_paths_splits_and_boxes(tmp_path: Path) -> None:
    records = load_karpathy(_write(tmp_path, _coco_like()))
    assert [r.image_id for r in records] == [391895, 522418, 57870, 184613]
    assert [r.split for r in records] == ["test", "train", "train", "val"]  # restval -> train
    assert records[0].path == tmp_path / "val2014" / "COCO_val2014_000000391895.jpg"
    assert records[0].captions == (("a", "man", "riding", "a", "bike"),)
    assert records[0].boxes is None and records[0].width is None
    assert records[2].boxes == ((1.0, 2.0, 30.5, 40.0),) and (records[2].width, records[2].height) == (640, 480)
    assert records[2].captions == (("dining", "room"), ("a", "table"))
    with pytest.raises(AttributeError):
        records[0].split = "val"  # type: ignore[misc]


def test_image_root_override(tmp_path: Path) -> None:
    records = load_karpathy(_write(tmp_path, _coco_like()), image_root=Path("/data/coco"))
    assert records[2].path == Path("/data/coco/train2014/COCO_train2014_000000057870.jpg")


def test_raw_captions(tmp_path: Path) -> None:
    records = load_karpathy(_write(tmp_path, _coco_like()), use_raw=True)
    assert records[0].captions == (("a", "man", "riding", "a", "bike"),)
    assert records[1].captions == (("a", "womans", "knife", "on", "a", "cutting", "board"),)
    assert tokenize_raw("  Two DOGS;  play_fetch\n") == ("two", "dogs", "play", "fetch")


def test_missing_tokens_fall_back_to_raw(tmp_path: Path) -> None:
    data = _coco_like()
    del data["images"][3]["sentences"][0]["tokens"]
    assert load_karpathy(_write(tmp_path, data))[3].captions == (("a", "boy"),)


def test_id_fallbacks(tmp_path: Path) -> None:
    data = _coco_like()
    del data["images"][0]["cocoid"]  # -> imgid 0
    for key in ("cocoid", "imgid"):  # -> filename suffix
        del data["images"][1][key]
    records = load_karpathy(_write(tmp_path, data))
    assert [r.image_id for r in records[:2]] == [0, 522418]


def test_split_records(tmp_path: Path) -> None:
    records = load_karpathy(_write(tmp_path, _coco_like()))
    assert [r.image_id for r in split_records(records, "train")] == [522418, 57870]
    assert [r.image_id for r in split_records(records, "val")] == [184613]
    assert split_records(records, "restval") == split_records(records, "train")
    with pytest.raises(UsageError, match="bogus"):
        split_records(records, "bogus")


def _broken(case: str) -> Any:
    data = _coco_like()
    if case == "no images":
        return {"dataset": "coco"}
    if case == "not a dict":
        return [1, 2]
    if case == "invalid json":
        return '{"images": [,]}'
    if case == "no filename":
        del data["images"][1]["filename"]
    elif case == "no sentences":
        del data["images"][2]["sentences"]
    elif case == "duplicate id":
        data["images"][3]["cocoid"] = 391895
    elif case == "unknown split":
        data["images"][0]["split"] = "dev"
    elif case == "no id":
        del data["images"][0]["cocoid"], data["images"][0]["imgid"]
        data["images"][0]["filename"] = "picture.jpg"
    elif case == "bad tokens":
        data["images"][0]["sentences"][0]["tokens"] = "a man"
    elif case == "bad box":
        data["images"][2]["objects"] = [{"box": [1, 2, 3]}]
    return data


@pytest.mark.parametrize(
    "case",
    [
        "no images",
        "not a dict",
        "invalid json",
        "no filename",
        "no sentences",
        "duplicate id",
        "unknown split",
        "no id",
        "bad tokens",
        "bad box",
    ],
)
def test_errors_name_the_file(tmp_path: Path, case: str) -> None:
    path = _write(tmp_path, _broken(case), name="broken_karpathy.json")
    with pytest.raises(DataError, match="broken_karpathy.json") as info:
        load_karpathy(path)
    assert "\n" not in str(info.value)


def test_error_names_the_image(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="57870"):
        load_karpathy(_write(tmp_path, _broken("no sentences")))
    with pytest.raises(DataError, match="duplicate image id 391895"):
        load_karpathy(_write(tmp_path, _broken("duplicate id")))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found: .*nothing.json"):
        load_karpathy(tmp_path / "nothing.json")


def test_reads_synthetic_dataset(tmp_path: Path) -> None:
    path = generate_synthetic(tmp_path / "syn", images=10)
    records = load_karpathy(path)
    assert len(records) == 10 and all(isinstance(r, ImageRecord) for r in records)
    assert [len(split_records(records, s)) for s in ("train", "val", "test")] == [8, 1, 1]
    for r in records:
        assert r.path.is_file() and r.width == r.height == 64 and len(r.captions) == 5
        assert r.boxes is not None and 1 <= len(r.boxes) <= 4
    raw = load_karpathy(path, use_raw=True)
    assert [r.captions for r in raw] == [r.captions for r in records]
