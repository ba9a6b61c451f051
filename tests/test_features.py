"""Real-data paths: Karpathy JSON flavours, region features (npy folder / HDF5), boxes, packing, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sparsecap_cli.main import app
from sparsecap_engine.config import DataConfig, ModelConfig
from sparsecap_engine.data.captions import CaptionSet
from sparsecap_engine.data.features import RegionFeatures, pack_features
from sparsecap_engine.data.karpathy import load_karpathy
from sparsecap_engine.data.synthetic import generate_synthetic
from sparsecap_engine.data.synthetic_features import FEAT_DIM, export_synthetic_features
from sparsecap_engine.errors import DataError
from sparsecap_engine.models.registry import build_model
from sparsecap_engine.text.vocab import Vocab
from sparsecap_engine.training.setup import fit_encoder, load_splits, resolve_model

D = 6


def _sent(raw: str) -> dict:
    return {"raw": raw, "tokens": raw.lower().rstrip(".").split()}


def coco_json(tmp: Path) -> Path:
    data = {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "cocoid": 42, "imgid": 0,
         "split": "restval", "sentences": [_sent("A Dog runs."), _sent("a dog")], "width": 200, "height": 100},
        {"filepath": "val2014", "filename": "COCO_val2014_000000000007.jpg", "cocoid": 7, "imgid": 1,
         "split": "val", "sentences": [_sent("A cat.")]},
        {"filepath": "train2014", "filename": "COCO_train2014_000000000009.jpg", "cocoid": 9, "imgid": 2,
         "split": "train", "sentences": [_sent("Two birds.")]},
    ]}
    path = tmp / "dataset_coco.json"
    path.write_text(json.dumps(data))
    return path


def test_karpathy_flavours(tmp_path: Path):
    """COCO (cocoid, restval), Flickr8k (imgid, hashed file names), Flickr30k (imgid, numeric names); raw or tokens."""
    records = load_karpathy(coco_json(tmp_path))
    assert [(r.image_id, r.split) for r in records] == [(42, "train"), (7, "val"), (9, "train")]
    assert records[0].captions[0] == ("a", "dog", "runs")
    f8k = {"dataset": "flickr8k", "images": [
        {"filename": "2513260012_03d33305cf.jpg", "imgid": 0, "split": "train",
         "sentences": [{"tokens": ["a", "black", "dog"], "raw": "A black dog, running!"}]},
        {"filename": "2903617548_d3e38d7f88.jpg", "imgid": 1, "split": "test",
         "sentences": [{"tokens": ["two", "kids"], "raw": "Two kids."}]},
    ]}
    (tmp_path / "f8k").mkdir()
    (tmp_path / "f8k" / "dataset_flickr8k.json").write_text(json.dumps(f8k))
    recs = load_karpathy(tmp_path / "f8k" / "dataset_flickr8k.json", image_root=tmp_path / "Flicker8k_Dataset")
    assert [r.image_id for r in recs] == [0, 1] and recs[0].path == tmp_path / "Flicker8k_Dataset" / f8k["images"][0][
        "filename"]
    raw = load_karpathy(tmp_path / "f8k" / "dataset_flickr8k.json", use_raw=True)
    assert raw[0].captions == (("a", "black", "dog", "running"),)
    f30k = {"dataset": "flickr30k", "images": [
        {"filename": "1000092795.jpg", "imgid": 0, "split": "val", "sentences": [{"raw": "Two young guys."}]},
        {"filename": "10002456.jpg", "split": "train", "sentences": [{"tokens": ["a", "man"]}]},
    ]}
    (tmp_path / "f30k.json").write_text(json.dumps(f30k))
    recs = load_karpathy(tmp_path / "f30k.json")
    assert [(r.image_id, r.split) for r in recs] == [(0, "val"), (10002456, "train")]  # no imgid → file number
    assert recs[0].captions == (("two", "young", "guys"),)


def write_npy(folder: Path, feats: dict[int, np.ndarray], boxes: dict[int, np.ndarray] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for iid, arr in feats.items():
        np.save(folder / f"{iid}.npy", arr.astype(np.float32))
    for iid, arr in (boxes or {}).items():
        (folder.parent / "box").mkdir(exist_ok=True)
        np.save(folder.parent / "box" / f"{iid}.npy", arr.astype(np.float32))


@pytest.fixture()
def coco_with_features(tmp_path: Path) -> dict[str, Path]:
    dataset = coco_json(tmp_path)
    rng = np.random.default_rng(0)
    feats = {42: rng.normal(size=(3, D)), 7: rng.normal(size=(2, D)), 9: rng.normal(size=(4, D))}
    boxes = {  # absolute pixels; 42 has its size in the JSON, 7 and 9 get it from their image files
        42: np.array([[0, 0, 200, 100], [50, 25, 100, 50], [10, 10, 20, 20]]),
        7: np.array([[0, 0, 32, 16], [8, 4, 16, 8]]),
        9: np.array([[0, 0, 10, 10], [1, 1, 2, 2], [0, 0, 64, 48], [30, 20, 40, 30]]),
    }
    write_npy(tmp_path / "att", feats, boxes)
    for folder, name, size in (("val2014", "COCO_val2014_000000000007.jpg", (32, 16)),
                               ("train2014", "COCO_train2014_000000000009.jpg", (64, 48))):
        (tmp_path / folder).mkdir(exist_ok=True)
        Image.new("RGB", size).save(tmp_path / folder / name, format="PNG")
    return {"dataset": dataset, "att": tmp_path / "att", "box": tmp_path / "box", "root": tmp_path}


def test_npy_folder_features_and_absolute_boxes(coco_with_features: dict[str, Path]):
    paths = coco_with_features
    records = load_karpathy(paths["dataset"])
    store = RegionFeatures.open(paths["att"], paths["box"])
    data = CaptionSet.build(records, Vocab(["a", "dog"]), 10, 32, features=store)
    assert store.dim == D and data.images.shape[0] == 0
    batch = data.image_batch([0, 1])
    assert batch["att_feats"].shape == (2, 3, D) and batch["att_masks"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert torch.allclose(batch["att_feats"][0], torch.from_numpy(np.load(paths["att"] / "42.npy")))
    assert torch.all(batch["att_feats"][1, 2] == 0) and torch.all(batch["boxes"][1, 2] == 0)
    assert torch.allclose(batch["boxes"][0, 1], torch.tensor([0.25, 0.25, 0.5, 0.5]))  # JSON width/height
    assert torch.allclose(batch["boxes"][1, 1], torch.tensor([0.25, 0.25, 0.5, 0.5]))  # image file header
    assert data.image_batch([2])["boxes"].max() <= 1.0


def test_pack_features_to_hdf5_and_read_back(coco_with_features: dict[str, Path], tmp_path: Path):
    paths = coco_with_features
    out, n = pack_features(paths["att"], tmp_path / "feats.h5", paths["box"], dtype="float16", box_format="absolute")
    assert n == 3 and out.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with h5py.File(out) as f:
        assert f["feats/42"].dtype == np.float16 and f.attrs["feat_dim"] == D and f.attrs["box_format"] == "absolute"
    records = load_karpathy(paths["dataset"])
    from_h5 = RegionFeatures.open(out)  # boxes come from the same file
    from_npy = RegionFeatures.open(paths["att"], paths["box"])
    assert from_h5.has_boxes and from_h5.check(records) == D
    a, b = from_h5.batch(records), from_npy.batch(records)
    assert torch.allclose(a["att_feats"], b["att_feats"], atol=1e-2) and torch.allclose(a["boxes"], b["boxes"])


def test_cli_pack_features(coco_with_features: dict[str, Path], tmp_path: Path):
    paths = coco_with_features
    out = tmp_path / "cli.h5"
    res = CliRunner().invoke(app, ["data", "pack-features", str(paths["att"]), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "3 images" in res.output and out.is_file()


def _error(fn) -> str:
    with pytest.raises(DataError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_bad_input_names_file_and_id(coco_with_features: dict[str, Path], tmp_path: Path):
    paths = coco_with_features
    records = load_karpathy(paths["dataset"])
    att, box = paths["att"], paths["box"]

    (att / "9.npy").unlink()  # missing feature
    msg = _error(lambda: RegionFeatures.open(att).check(records))
    assert "9" in msg and str(att) in msg

    np.save(att / "9.npy", np.zeros((4, D + 1), np.float32))  # wrong width
    msg = _error(lambda: RegionFeatures.open(att).check(records))
    assert "9.npy" in msg and f"{D + 1}-d" in msg

    np.save(att / "9.npy", np.zeros((4, D), np.float32))
    np.save(box / "9.npy", np.array([[0, 0, 10, 10], [1, 1, 2, 2], [0, 0, 640, 48], [30, 20, 40, 30]], np.float32))
    store = RegionFeatures.open(att, box)
    msg = _error(lambda: store.batch([records[2]]))  # box 2 wider than the 64 px image
    assert "9.npy" in msg and "out of range" in msg and "image 9" in msg

    np.save(box / "9.npy", np.array([[0.1, 0.1, 0.05, 0.2]] * 4, np.float32))  # x2 < x1
    assert "out of range" in _error(lambda: RegionFeatures.open(att, box, "relative").batch([records[2]]))

    np.save(box / "9.npy", np.zeros((3, 4), np.float32))  # 3 boxes for 4 regions
    assert "9.npy" in _error(lambda: RegionFeatures.open(att, box).check(records))

    (paths["root"] / "train2014" / "COCO_train2014_000000000009.jpg").unlink()
    np.save(box / "9.npy", np.full((4, 4), 5.0, np.float32))  # absolute, but no size known
    assert "size" in _error(lambda: RegionFeatures.open(att, box).batch([records[2]]))

    h5 = tmp_path / "f.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("feats/42", data=np.zeros((2, D)))
    msg = _error(lambda: RegionFeatures.open(h5).check(records))  # HDF5 missing a dataset
    assert "f.h5" in msg and "/feats/7" in msg
    msg = _error(lambda: RegionFeatures.open(h5).read(records[1]))
    assert "f.h5" in msg and "7" in msg
    (tmp_path / "junk.h5").write_text("not hdf5")
    assert "junk.h5" in _error(lambda: RegionFeatures.open(tmp_path / "junk.h5"))
    assert "nowhere" in _error(lambda: RegionFeatures.open(tmp_path / "nowhere"))
    assert "dataset_coco.json" in _error(lambda: export_synthetic_features(paths["dataset"], tmp_path / "x.h5"))
    assert not (tmp_path / "x.h5").exists()


def test_pack_is_all_or_nothing(coco_with_features: dict[str, Path], tmp_path: Path):
    paths = coco_with_features
    np.save(paths["att"] / "9.npy", np.zeros((4, D + 2), np.float32))
    out = tmp_path / "packed" / "feats.h5"
    assert "9" in _error(lambda: pack_features(paths["att"], out))
    assert list(out.parent.iterdir()) == []  # no half-written file, no temp file


def test_synthetic_dataset_exports_region_features(tmp_path: Path):
    dataset = generate_synthetic(tmp_path / "syn", images=12, size=32, seed=5)
    records = load_karpathy(dataset)
    store = RegionFeatures.open(dataset.parent / "features.h5")
    assert store.check(records) == FEAT_DIM and store.has_boxes and store.box_format == "relative"
    for r in records:
        feats, boxes = store.read(r)
        assert feats.shape == (1 + len(r.boxes), FEAT_DIM)
        assert np.allclose(boxes[0], [0, 0, 1, 1]) and np.allclose(boxes[1:] * 32, np.array(r.boxes))
        assert np.allclose(feats[:, -4:], boxes) and 0 <= feats.min() and feats.max() <= 1


def test_splits_with_features_drive_the_encoder(tmp_path: Path):
    dataset = generate_synthetic(tmp_path / "syn", images=20, size=32, seed=5)
    cfg = DataConfig(dataset=str(dataset), features="auto", image_size=32, min_word_count=1)
    model_cfg = resolve_model(ModelConfig(name="ort", preset="ort-cpu"))
    splits = load_splits(cfg, model=model_cfg)
    fitted = fit_encoder(model_cfg, splits)
    assert fitted["encoder"] == "regions" and fitted["encoder_args"] == {"feat_dim": FEAT_DIM}
    model = build_model({**fitted, "d_model": 16, "dim_feedforward": 16, "num_layers": 1}, len(splits.vocab))
    memory = model.encode(splits.train.image_batch([0, 1, 2]))
    assert memory["mask"].shape[0] == 3
    pixels = fit_encoder(resolve_model(ModelConfig(name="ort", preset="ort-paper")),
                         load_splits(DataConfig(dataset=str(dataset), image_size=32, min_word_count=1)))
    assert pixels["encoder"] == "grid-cnn"  # a region-feature preset on raw images gets the pixel encoder


def test_proposals_find_every_drawn_object(tmp_path: Path):
    """The synthetic scenes' region proposer returns exactly the drawn boxes, so captioning a fresh image feeds the
    model the features it was trained on (same rows as ``features.h5``, in reading order)."""
    from sparsecap_engine.data.images import read_rgb
    from sparsecap_engine.data.synthetic_features import propose_boxes, scene_regions

    dataset = generate_synthetic(tmp_path / "syn", images=40, size=64, seed=11)
    store = RegionFeatures.open(dataset.parent / "features.h5")
    backgrounds = set()
    for r in load_karpathy(dataset):
        pixels = read_rgb(r.path, 64)
        backgrounds.add(tuple(pixels[0, 0] > 225))
        assert sorted(propose_boxes(pixels)) == sorted(tuple(float(v) for v in b) for b in r.boxes), r.path
        feats, boxes = scene_regions(pixels)
        stored, _ = store.read(r)
        assert np.allclose(feats[0], stored[0]) and np.allclose(boxes, feats[:, -4:])
        assert sorted(map(tuple, feats[1:].round(5))) == sorted(map(tuple, stored[1:].round(5)))
    assert len(backgrounds) == 2  # white and grey backgrounds both seen
    assert propose_boxes(np.full((64, 64, 3), 204, np.uint8)) == []
    speck = np.full((64, 64, 3), 246, np.uint8)
    speck[10, 10] = 0  # one stray pixel is noise, not an object
    assert propose_boxes(speck) == []


def test_v2_descriptor_tells_small_shapes_apart():
    """The v2 descriptor's 8×8 foreground grid separates circle, square, triangle and diamond of the same colour at
    the small size, where v1's 4×4 colour grid barely does (its confusions were the demo's shape errors); its
    colour and box parts are v1's exactly, and the grid is the same on either background."""
    import random

    from sparsecap_engine.data.scenes import Scene, SceneObject, render_scene
    from sparsecap_engine.data.synthetic_features import FEAT_DIMS, POOL, V1, V2, image_descriptors

    shapes = ("circle", "square", "triangle", "diamond")
    grids = {}
    for background in ("white", "grey"):
        boxes = [(8 + 30 * i, 20, 8 + 30 * i + 14, 34) for i in range(4)]  # 14 px: the small size
        objects = tuple(SceneObject(s, "blue", "small", b) for s, b in zip(shapes, boxes, strict=True))
        pixels = np.asarray(render_scene(Scene(128, 64, background, objects), random.Random(0)))
        v1 = image_descriptors(pixels, [tuple(map(float, b)) for b in boxes], V1)
        v2 = image_descriptors(pixels, [tuple(map(float, b)) for b in boxes], V2)
        assert v1.shape == (4, FEAT_DIMS[V1]) and v2.shape == (4, FEAT_DIMS[V2])
        colour = POOL * POOL * 3
        assert np.array_equal(v2[:, :colour], v1[:, :colour]) and np.array_equal(v2[:, -4:], v1[:, -4:])
        grid = v2[:, colour:-4].reshape(4, 8, 8)
        grids[background] = grid
        corners = grid[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # top-left, top-right, bottom-left, bottom-right
        assert corners[1].min() > 0.9  # the square fills its corners
        assert corners[3].max() < 0.1  # the diamond leaves all four empty
        assert corners[2][:2].max() < 0.1 and corners[2][2:].min() > 0.4  # the triangle: empty top, full bottom
        fill = grid.mean(axis=(1, 2))  # square 1, circle π/4, triangle and diamond 1/2
        assert abs(fill[0] - np.pi / 4) < 0.08 and abs(fill[1] - 1) < 0.08 and abs(fill[3] - 0.5) < 0.08
        for i in range(4):
            for j in range(i):
                assert np.abs(grid[i] - grid[j]).sum() > 5, (shapes[i], shapes[j])
    assert np.abs(grids["white"] - grids["grey"]).max() < 0.05


@pytest.mark.parametrize("version", ["synthetic-scenes-v1", "synthetic-scenes-v2"])
def test_regions_model_captions_images(tmp_path: Path, version: str):
    """A model trained on the synthetic region features captions a PNG: its checkpoint names the regions, and
    the caption equals the one decoded from the dataset's stored features, for the default descriptor (v2) and the
    older v1 alike; foreign region models are refused."""
    from sparsecap_engine.checkpoint.model_io import save_model
    from sparsecap_engine.data.synthetic_features import REGIONS_NAME
    from sparsecap_engine.decoding.api import DecodeOptions, caption_batch
    from sparsecap_engine.errors import UsageError
    from sparsecap_engine.inference import Captioner

    dataset = generate_synthetic(tmp_path / "syn", images=20, size=64, seed=5)
    features = "auto"
    if version != REGIONS_NAME:
        features = str(export_synthetic_features(dataset, tmp_path / "old.h5", regions=version))
    splits = load_splits(DataConfig(dataset=str(dataset), features=features, min_word_count=1))
    assert splits.train.features is not None and splits.train.features.regions == version
    cfg = fit_encoder(resolve_model(ModelConfig(name="updown")), splits)
    torch.manual_seed(0)
    model = build_model({**cfg, "rnn_size": 32, "input_encoding_size": 16, "att_hid_size": 16}, len(splits.vocab))
    for p in model.parameters():  # a random model whose words depend on the image
        p.data.normal_(0, 0.5)
    model.eval()
    opts = DecodeOptions(method="greedy", max_len=12).check()
    expected = caption_batch(model, splits.train.image_batch(list(range(6))), splits.vocab, opts)
    assert len(set(expected)) > 1
    ckpt = tmp_path / "m.safetensors"
    save_model(ckpt, model, splits.vocab, image_size=64, regions=version)
    paths = [r.path for r in splits.train.records[:6]]
    assert Captioner.load(checkpoint=ckpt).caption(paths, opts) == expected
    save_model(ckpt, model, splits.vocab, image_size=64)
    with pytest.raises(UsageError, match="region features"):
        Captioner.load(checkpoint=ckpt).caption(paths, opts)


def test_uncaptioned_training_images_are_skipped_not_hung_on(tmp_path: Path):
    """A train image with no sentences used to hang batch assembly forever: it is left out and counted."""
    dataset = generate_synthetic(tmp_path / "syn", images=20, size=32, seed=5)
    data = json.loads(dataset.read_text())
    train = [e for e in data["images"] if e["split"] == "train"]
    train[0]["sentences"] = []
    dataset.write_text(json.dumps(data))
    splits = load_splits(DataConfig(dataset=str(dataset), image_size=32, min_word_count=1))
    assert splits.skipped_train == 1 and len(splits.train) == len(train) - 1
    assert splits.train.caption_batch(list(range(len(splits.train))), 5, torch.Generator()).shape[0] == 5 * (
        len(train) - 1)
    for e in train:
        e["sentences"] = []
    dataset.write_text(json.dumps(data))
    with pytest.raises(DataError, match="no image of the 'train' split has a caption"):
        load_splits(DataConfig(dataset=str(dataset), image_size=32, min_word_count=1))
