"""Karpathy split JSON (COCO, Flickr8k/30k and the synthetic dataset) read into plain image records."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsecap_engine.errors import DataError, UsageError

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "restval": "train", "val": "val", "test": "test"}
_PUNCT = re.compile(r"[^\w\s]|_")


@dataclass(frozen=True)
class ImageRecord:
    """One image: id, file path, split, reference captions as token tuples and optional object boxes (pixels)."""

    image_id: int
    path: Path
    split: str
    captions: tuple[tuple[str, ...], ...]
    boxes: tuple[tuple[float, float, float, float], ...] | None = None
    width: int | None = None
    height: int | None = None


def tokenize_raw(raw: str) -> tuple[str, ...]:
    """Lower-case, drop apostrophes, turn other punctuation into spaces, split on whitespace."""
    return tuple(_PUNCT.sub(" ", raw.lower().replace("'", "")).split())


def _image_id(entry: dict[str, Any], filename: str, where: str) -> int:
    for key in ("cocoid", "imgid"):
        value = entry.get(key)
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                raise DataError(f"{where}: {key} {value!r} of {filename} is not an integer") from None
    match = re.search(r"(\d+)$", Path(filename).stem)
    if match is None:
        raise DataError(f"{where}: no cocoid/imgid and no number at the end of the filename {filename}")
    return int(match.group(1))


def _caption(sentence: Any, use_raw: bool, where: str) -> tuple[str, ...]:
    if not isinstance(sentence, dict):
        raise DataError(f"{where}: a sentence is not an object")
    tokens, raw = sentence.get("tokens"), sentence.get("raw")
    if use_raw or tokens is None:
        if not isinstance(raw, str):
            raise DataError(f"{where}: a sentence has no {'raw' if use_raw else 'tokens or raw'} text")
        return tokenize_raw(raw)
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise DataError(f"{where}: a sentence's tokens are not a list of strings")
    return tuple(t.lower() for t in tokens)


def _boxes(entry: dict[str, Any], where: str) -> tuple[tuple[float, float, float, float], ...] | None:
    objects = entry.get("objects")
    if objects is None:
        return None
    try:
        boxes = []
        for obj in objects:
            x1, y1, x2, y2 = (float(v) for v in obj["box"])
            boxes.append((x1, y1, x2, y2))
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{where}: objects must each have a box [x1, y1, x2, y2]") from None
    return tuple(boxes)


def _optional_int(entry: dict[str, Any], key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {key} {value!r} is not an integer") from None


def load_karpathy(json_path: Path, image_root: Path | None = None, use_raw: bool = False) -> list[ImageRecord]:
    """Read a Karpathy split JSON; ``restval`` counts as train; paths are ``image_root/filepath/filename``.

    ``image_root`` defaults to the JSON's folder. Captions are the ``tokens`` lists, or ``raw`` re-tokenised when
    ``use_raw``. The image id is ``cocoid``, else ``imgid``, else the number at the end of the filename. An image with
    an empty ``sentences`` list is kept (no references).
    """
    json_path = Path(json_path)
    if not json_path.is_file():
        raise DataError(f"dataset file not found: {json_path}")
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON in {json_path}: {e.msg} at line {e.lineno}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {json_path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{json_path}: no 'images' list (not a Karpathy split JSON)")
    root = Path(image_root) if image_root is not None else json_path.parent
    records: list[ImageRecord] = []
    seen: dict[int, str] = {}
    for index, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str) or not entry["filename"]:
            raise DataError(f"{json_path}: image #{index} has no filename")
        filename = entry["filename"]
        image_id = _image_id(entry, filename, str(json_path))
        where = f"{json_path}: image {image_id} ({filename})"
        if image_id in seen:
            raise DataError(f"{json_path}: duplicate image id {image_id} ({seen[image_id]} and {filename})")
        seen[image_id] = filename
        sentences = entry.get("sentences")
        if not isinstance(sentences, list):
            raise DataError(f"{where} has no sentences")
        split_name = entry.get("split")
        split = _SPLIT_ALIASES.get(split_name) if isinstance(split_name, str) else None
        if split is None:
            raise DataError(f"{where} has unknown split {split_name!r}")
        records.append(
            ImageRecord(
                image_id=image_id,
                path=root / str(entry.get("filepath") or "") / filename,
                split=split,
                captions=tuple(_caption(s, use_raw, where) for s in sentences),
                boxes=_boxes(entry, where),
                width=_optional_int(entry, "width", where),
                height=_optional_int(entry, "height", where),
            )
        )
    return records


def split_records(records: list[ImageRecord], split: str) -> list[ImageRecord]:
    """The records of one split (``train``, ``val`` or ``test``; ``restval`` means train), in file order."""
    name = _SPLIT_ALIASES.get(split)
    if name is None:
        raise UsageError(f"unknown split {split!r} (choose train, val or test)")
    return [r for r in records if r.split == name]
