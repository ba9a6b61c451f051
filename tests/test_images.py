"""Image loading (formats, modes, odd sizes, errors), in-memory uint8 stacks and normalisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from sparsecap_engine.data.images import MEAN, STD, load_image, load_images_uint8, normalize
from sparsecap_engine.errors import DataError


def _save(img: Image.Image, path: Path, **kwargs: object) -> Path:
    img.save(path, **kwargs)
    return path


def test_png_odd_size_rgb(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (37, 23), (255, 0, 51)), tmp_path / "a.png")
    x = load_image(path, 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x[:, 5, 5], torch.tensor([1.0, 0.0, 0.2]), atol=1e-6)
    assert load_image(path, 50).shape == (3, 50, 50)  # upscaling works too


def test_jpeg_and_greyscale(tmp_path: Path) -> None:
    rgb = load_image(_save(Image.new("RGB", (101, 77), (20, 200, 90)), tmp_path / "a.jpg", quality=95), 32)
    assert rgb.shape == (3, 32, 32) and 0.0 <= rgb.min() and rgb.max() <= 1.0
    assert torch.allclose(rgb[:, 16, 16] * 255, torch.tensor([20.0, 200.0, 90.0]), atol=6)
    for name in ("g.png", "g.jpg"):
        grey = load_image(_save(Image.new("L", (45, 60), 128), tmp_path / name), 24)
        assert grey.shape == (3, 24, 24)
        assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])
        assert abs(grey.mean().item() * 255 - 128) < 2


def test_big_jpeg_downscaled(tmp_path: Path) -> None:
    img = Image.new("RGB", (640, 480), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 320, 480))  # left half red
    x = load_image(_save(img, tmp_path / "big.jpg", quality=95), 64)
    assert x.shape == (3, 64, 64)
    assert x[0, 32, 5] > 0.9 and x[2, 32, 58] > 0.9


def test_rgba_and_palette(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (30, 30), (0, 0, 0, 0))  # fully transparent -> white
    rgba.paste((255, 0, 0, 255), (0, 0, 15, 30))
    x = load_image(_save(rgba, tmp_path / "t.png"), 30)
    assert torch.allclose(x[:, 10, 25], torch.ones(3)) and torch.allclose(x[:, 10, 3], torch.tensor([1.0, 0, 0]))
    pal = Image.new("RGB", (19, 13), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    y = load_image(_save(pal, tmp_path / "p.png"), 8)
    assert y.shape == (3, 8, 8) and torch.allclose(y[:, 4, 4] * 255, torch.tensor([0.0, 128.0, 255.0]), atol=1)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image not found: .*missing.png"):
        load_image(tmp_path / "missing.png", 8)
    (tmp_path / "text.png").write_text("not really a png")
    with pytest.raises(DataError, match="not an image file: .*text.png"):
        load_image(tmp_path / "text.png", 8)
    good = Image.new("RGB", (40, 40), (1, 2, 3))
    data = _save(good, tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not an image file: .*cut.png"):
        load_image(tmp_path / "cut.png", 8)


def test_load_images_uint8(tmp_path: Path) -> None:
    paths = [_save(Image.new("RGB", (20 + i, 17), (10 * i, 100, 200)), tmp_path / f"{i}.png") for i in range(5)]
    calls: list[tuple[str, int, int | None]] = []
    stack = load_images_uint8(paths, 12, progress=lambda task, done, total, **info: calls.append((task, done, total)))
    assert stack.shape == (5, 3, 12, 12) and stack.dtype == torch.uint8
    assert torch.equal(stack[3].float() / 255, load_image(paths[3], 12))
    assert calls[-1] == ("images", 5, 5)
    assert load_images_uint8([], 12).shape == (0, 3, 12, 12)


def test_normalize() -> None:
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    x = torch.rand(3, 5, 7)
    assert torch.allclose(normalize(x), (x - mean) / std)
    batch = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    out = normalize(batch)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4)
    assert torch.allclose(out, normalize(batch.float() / 255))
    grey = torch.full((3, 2, 2), 0.5)
    assert torch.allclose(normalize(grey)[:, 0, 0], (0.5 - torch.tensor(MEAN)) / torch.tensor(STD))
    assert normalize(x.half()).dtype == torch.float16
    with pytest.raises(ValueError):
        normalize(torch.rand(4, 5, 5))
