"""The embedded default dataset: small rendered scenes of coloured shapes with truthful captions.

Each image holds 1-4 objects (colour x shape x size) placed without overlap on a light background. Captions come
from a small grammar with synonyms: object lists, spatial relations between two objects, positions in the image and
counts. Everything is drawn from one ``random.Random`` per image, so the output is byte-identical for a given seed.
The dataset is written in the Karpathy JSON layout (``dataset.json`` + ``images/*.png``) with absolute object boxes,
so the Karpathy loader serves it like COCO or Flickr; ``features.h5`` holds per-object region features and boxes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from PIL import Image, ImageDraw

from sparsecap_engine.errors import DataError, UsageError
from sparsecap_engine.progress import Progress, no_progress

GENERATOR_VERSION = 1
DEFAULT_IMAGES = 5000
DEFAULT_SIZE = 64
DEFAULT_SEED = 0
CAPTIONS_PER_IMAGE = 5
SUPERSAMPLE = 4  # shapes are drawn at 4x and box-filtered down: anti-aliased edges

Box = tuple[int, int, int, int]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 60),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 25),
    "purple": (135, 55, 175),
    "orange": (245, 130, 15),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = ("small", "large")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"white": (246, 246, 246), "grey": (204, 204, 204)}

SHAPE_WORDS = {
    "circle": ("circle", "ball", "disc"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
}
PLURALS = {"box": "boxes", "rhombus": "rhombuses"}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
BACKGROUND_WORDS = {"white": ("white",), "grey": ("grey", "gray")}
GENERIC_NOUNS = ("shape", "object")
RELATION_WORDS = {
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
    "left": ("to the left of", "left of"),
    "right": ("to the right of", "right of"),
    "next": ("next to", "beside"),
}
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; ``box`` is (x1, y1, x2, y2) in pixels, the shape fills it."""

    shape: str
    color: str
    size: str
    box: Box


@dataclass(frozen=True)
class Scene:
    """An image's content: canvas size, background name and objects."""

    width: int
    height: int
    background: str
    objects: tuple[SceneObject, ...]


# --------------------------------------------------------------------------------------------------------- geometry


def spatial_relations(a: Box, b: Box) -> list[str]:
    """Relations of box ``a`` to box ``b`` that a caption may state: subset of above/below/left/right/next.

    ``a`` is *above* ``b`` when it lies (almost) entirely higher (overlap of at most 20 % of the smaller height) and
    the vertical offset of the centres is at least 0.7 x the horizontal one; left/right likewise. *next* (to) means
    side by side: horizontally apart, rows overlapping by half the smaller height, gap at most the wider width.
    """
    ax, ay = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    dx, dy = bx - ax, by - ay  # > 0: b is right of / below a
    tol_y = 0.2 * min(a[3] - a[1], b[3] - b[1])
    tol_x = 0.2 * min(a[2] - a[0], b[2] - b[0])
    out: list[str] = []
    if a[3] <= b[1] + tol_y and dy >= 0.7 * abs(dx):
        out.append("above")
    if b[3] <= a[1] + tol_y and -dy >= 0.7 * abs(dx):
        out.append("below")
    if a[2] <= b[0] + tol_x and dx >= 0.7 * abs(dy):
        out.append("left")
    if b[2] <= a[0] + tol_x and -dx >= 0.7 * abs(dy):
        out.append("right")
    gap = max(b[0] - a[2], a[0] - b[2])
    row_overlap = min(a[3], b[3]) - max(a[1], b[1])
    if ("left" in out or "right" in out) and row_overlap >= 0.5 * min(a[3] - a[1], b[3] - b[1]):
        if gap <= max(a[2] - a[0], b[2] - b[0]):
            out.append("next")
    return out


def image_position(box: Box, width: int, height: int) -> tuple[str | None, str | None]:
    """Where a box's centre lies: (``left|centre|right|None``, ``top|centre|bottom|None``); None = borderline."""

    def zone(c: float, extent: int, low: str, high: str) -> str | None:
        f = c / extent
        if f < 0.38:
            return low
        if f > 0.62:
            return high
        if 0.42 <= f <= 0.58:
            return "centre"
        return None

    return zone((box[0] + box[2]) / 2, width, "left", "right"), zone((box[1] + box[3]) / 2, height, "top", "bottom")


def _position_phrases(h: str | None, v: str | None) -> list[str]:
    """All true phrases for a position in the image."""
    out: list[str] = []
    if h in ("left", "right"):
        out += [f"on the {h}", f"on the {h} side"]
    if v in ("top", "bottom"):
        out += [f"at the {v}", f"at the {v} of the image"]
    if h in ("left", "right") and v in ("top", "bottom"):
        out += [f"in the {v} {h} corner", f"in the {v} {h}"]
    if h == "centre" and v == "centre":
        out += ["in the middle", "in the centre", "in the center"]
    return out


# ------------------------------------------------------------------------------------------------------------ scenes


def sample_scene(rng: random.Random, size: int) -> Scene:
    """Draw 1-4 objects (sometimes repeating a colour+shape, so counts are interesting) placed without overlap."""
    n = rng.choices((1, 2, 3, 4), weights=(15, 35, 30, 20))[0]
    kinds: list[tuple[str, str, str]] = []
    for _ in range(n):
        if kinds and rng.random() < 0.25:
            shape, color, _ = rng.choice(kinds)
        else:
            shape, color = rng.choice(SHAPES), rng.choice(tuple(COLORS))
        kinds.append((shape, color, rng.choice(SIZES)))
    objects: list[SceneObject] = []
    for shape, color, sz in kinds:
        frac = rng.uniform(0.08, 0.10) if sz == "small" else rng.uniform(0.15, 0.18)
        r = max(2, round(size * frac))
        for _ in range(60):
            cx, cy = rng.randint(r + 1, size - 1 - r), rng.randint(r + 1, size - 1 - r)
            box = (cx - r, cy - r, cx + r, cy + r)
            if all(_apart(box, o.box, gap=2) for o in objects):
                objects.append(SceneObject(shape, color, sz, box))
                break
    return Scene(size, size, rng.choice(tuple(BACKGROUNDS)), tuple(objects))


def _apart(a: Box, b: Box, gap: int) -> bool:
    """True when the boxes are at least ``gap`` pixels apart along some axis (no overlap)."""
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def render_scene(scene: Scene, rng: random.Random) -> Image.Image:
    """Draw the scene (anti-aliased) with a slight background tint and colour jitter drawn from ``rng``."""
    s = SUPERSAMPLE
    bg = tuple(min(255, max(0, c + rng.randint(-5, 5))) for c in BACKGROUNDS[scene.background])
    img = Image.new("RGB", (scene.width * s, scene.height * s), bg)
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        fill = tuple(min(255, max(0, c + rng.randint(-10, 10))) for c in COLORS[obj.color])
        x1, y1, x2, y2 = (v * s for v in obj.box)
        x2, y2 = x2 - 1, y2 - 1
        if obj.shape == "circle":
            draw.ellipse((x1, y1, x2, y2), fill=fill)
        elif obj.shape == "square":
            draw.rectangle((x1, y1, x2, y2), fill=fill)
        elif obj.shape == "triangle":
            draw.polygon([(x1, y2), (x2, y2), ((x1 + x2) / 2, y1)], fill=fill)
        else:  # diamond
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            draw.polygon([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], fill=fill)
    return img.reduce(s)


# ---------------------------------------------------------------------------------------------------------- captions


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _plural(noun: str) -> str:
    return PLURALS.get(noun, noun + "s")


def _join(parts: list[str]) -> str:
    """'a, b and c' (the comma is dropped from the tokens)."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class _Writer:
    """Caption templates over one scene; every template states only what the scene's geometry makes true."""

    def __init__(self, scene: Scene, rng: random.Random) -> None:
        self.scene, self.rng = scene, rng
        self.pairs = [
            (a, b, rels)
            for a in scene.objects
            for b in scene.objects
            if a is not b and (rels := spatial_relations(a.box, b.box))
        ]
        self.placed = [
            (o, p) for o in scene.objects if (p := _position_phrases(*image_position(o.box, scene.width, scene.height)))
        ]

    def templates(self) -> list[Any]:
        out = [self.listing, self.count]
        if len(self.scene.objects) > 1:
            out.append(self.groups)
        if self.pairs:
            out += [self.relation, self.relation]
        if self.placed:
            out.append(self.position)
        return out

    def noun(self, obj: SceneObject) -> tuple[str, bool]:
        """A noun phrase without article for ``obj`` and whether it names exactly one object of the scene."""
        rng = self.rng
        use_color, use_size = rng.random() < 0.85, rng.random() < 0.5
        if not (use_color or use_size):
            use_color = True
        generic = rng.random() < 0.12
        words = []
        if use_size:
            words.append(rng.choice(SIZE_WORDS[obj.size]))
        if use_color:
            words.append(obj.color)
        words.append(rng.choice(GENERIC_NOUNS) if generic else rng.choice(SHAPE_WORDS[obj.shape]))
        matches = [
            o
            for o in self.scene.objects
            if (not use_size or o.size == obj.size)
            and (not use_color or o.color == obj.color)
            and (generic or o.shape == obj.shape)
        ]
        return " ".join(words), len(matches) == 1

    def background(self) -> str:
        if self.rng.random() < 0.5:
            return ""
        return f" on a {self.rng.choice(BACKGROUND_WORDS[self.scene.background])} background"

    def listing(self) -> str:
        objs = list(self.scene.objects)
        self.rng.shuffle(objs)
        return _join([_article(self.noun(o)[0]) for o in objs]) + self.background()

    def count(self) -> str:
        n, rng = len(self.scene.objects), self.rng
        noun = rng.choice(GENERIC_NOUNS)
        if n == 1:
            body = rng.choice((f"a single {noun}", f"one {noun}", f"only one {noun}"))
            return rng.choice(("", "there is ")) + body + self.background()
        body = f"{NUMBERS[n]} {rng.choice(('', 'coloured ', 'colored '))}{_plural(noun)}"
        return rng.choice(("", "there are ")) + body + self.background()

    def groups(self) -> str:
        rng = self.rng
        by_color = rng.random() < 0.5
        counts: dict[tuple[str, str], int] = {}
        for o in self.scene.objects:
            key = (o.color if by_color else "", o.shape)
            counts[key] = counts.get(key, 0) + 1
        parts = []
        for (color, shape), k in counts.items():
            word = rng.choice(SHAPE_WORDS[shape])
            prefix = f"{color} " if color else ""
            parts.append(_article(prefix + word) if k == 1 else f"{NUMBERS[k]} {prefix}{_plural(word)}")
        rng.shuffle(parts)
        lead = ("there is " if parts[0].startswith("a") else "there are ") if rng.random() < 0.5 else ""
        return lead + _join(parts) + self.background()

    def relation(self) -> str:
        rng = self.rng
        a, b, rels = rng.choice(self.pairs)
        rel = rng.choice(RELATION_WORDS[rng.choice(rels)])
        (na, ua), (nb, ub) = self.noun(a), self.noun(b)
        if ua and ub and rng.random() < 0.35:
            return f"the {na} is {rel} the {nb}"
        return rng.choice(("", "there is ")) + f"{_article(na)} {rel} {_article(nb)}"

    def position(self) -> str:
        rng = self.rng
        obj, phrases = rng.choice(self.placed)
        where = rng.choice(phrases)
        name, unique = self.noun(obj)
        if unique and rng.random() < 0.3:
            return f"the {name} is {where}"
        return rng.choice(("", "there is ")) + f"{_article(name)} {where}"


def describe_scene(scene: Scene, rng: random.Random, n: int = CAPTIONS_PER_IMAGE) -> list[str]:
    """``n`` distinct lower-case captions (raw form, commas allowed) cycling through the templates that apply."""
    writer = _Writer(scene, rng)
    templates = writer.templates()
    rng.shuffle(templates)
    captions: list[str] = []
    for attempt in range(50 * n):
        text = templates[attempt % len(templates)]()
        if text not in captions:
            captions.append(text)
            if len(captions) == n:
                return captions
    raise RuntimeError(f"synthetic grammar produced only {len(captions)} distinct captions")  # pragma: no cover


def tokenize(raw: str) -> list[str]:
    """Karpathy-style tokens of a generated caption (the grammar's only punctuation is the comma)."""
    return raw.replace(",", " ").split()


# ------------------------------------------------------------------------------------------------------------ output


def _check_args(images: int, size: int, val_fraction: float, test_fraction: float) -> None:
    if images < 1:
        raise UsageError(f"images must be at least 1 (got {images})")
    if not 32 <= size <= 1024:
        raise UsageError(f"size must be between 32 and 1024 pixels (got {size})")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UsageError(f"val/test fractions must be >= 0 and sum to < 1 (got {val_fraction}, {test_fraction})")


def _is_synthetic(out: Path) -> bool:
    """True when ``out`` holds a dataset this generator wrote."""
    try:
        with open(out / "dataset.json", encoding="utf-8") as f:
            return json.load(f).get("dataset") == "synthetic"
    except (OSError, ValueError, AttributeError):
        return False


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"output exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()) and not _is_synthetic(out):
        raise DataError(f"refusing to overwrite a non-empty folder that is not a synthetic dataset: {out}")


def _publish(tmp: Path, out: Path, replace: bool) -> None:
    """Move the finished temp folder to ``out`` by rename; an existing synthetic ``out`` is replaced or kept."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    try:
        os.rename(tmp, out)
        return
    except OSError:
        if not out.exists():
            raise
    _check_target(out)  # someone else put something there meanwhile
    if not replace:  # a concurrent generator won the race: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / "d")
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _generate(
    out: Path,
    images: int,
    size: int,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    progress: Progress,
    replace: bool,
) -> Path:
    _check_args(images, size, val_fraction, test_fraction)
    out = Path(out).absolute()
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_val, n_test = round(images * val_fraction), round(images * test_fraction)
    n_train = images - n_val - n_test
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        entries: list[dict[str, Any]] = []
        sentid = 0
        step = max(1, images // 100)
        for i in range(images):
            rng = random.Random(f"sparsecap-synthetic:{GENERATOR_VERSION}:{seed}:{i}")
            scene = sample_scene(rng, size)
            filename = f"{i:06d}.png"
            render_scene(scene, rng).save(tmp / "images" / filename, format="PNG")
            sentences = []
            for raw in describe_scene(scene, rng):
                sentences.append({"tokens": tokenize(raw), "raw": raw, "imgid": i, "sentid": sentid})
                sentid += 1
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            entries.append(
                {
                    "filepath": "images",
                    "filename": filename,
                    "imgid": i,
                    "cocoid": i,
                    "split": split,
                    "sentids": [s["sentid"] for s in sentences],
                    "sentences": sentences,
                    "width": scene.width,
                    "height": scene.height,
                    "objects": [
                        {"shape": o.shape, "color": o.color, "size": o.size, "box": list(o.box)} for o in scene.objects
                    ],
                }
            )
            if (i + 1) % step == 0 or i + 1 == images:
                progress("synthetic", i + 1, images)
        generator = {
            "version": GENERATOR_VERSION,
            "images": images,
            "size": size,
            "seed": seed,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
        }
        data = {"dataset": "synthetic", "generator": generator, "images": entries}
        with open(tmp / "dataset.json", "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        from sparsecap_engine.data.synthetic_features import export_synthetic_features

        export_synthetic_features(tmp / "dataset.json", tmp / "features.h5")  # region features + boxes (ORT)
        _publish(tmp, out, replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out / "dataset.json"


def generate_synthetic(
    out: Path,
    images: int = DEFAULT_IMAGES,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    progress: Progress = no_progress,
) -> Path:
    """Render ``images`` scenes of ``size`` px into ``out`` (Karpathy layout) and return the ``dataset.json`` path.

    Splits are contiguous: the first images are train, then val, then test. The dataset is built in a temp folder
    beside ``out`` and renamed into place; an existing ``out`` is replaced only if it is empty or a synthetic dataset.
    """
    return _generate(Path(out), images, size, seed, val_fraction, test_fraction, progress, replace=True)


def default_dataset_dir() -> Path:
    """Where the default dataset lives: ``$SPARSECAP_CACHE`` or the user cache dir, named by version and params."""
    root = os.environ.get("SPARSECAP_CACHE") or platformdirs.user_cache_dir("sparsecap")
    name = f"synthetic-v{GENERATOR_VERSION}-n{DEFAULT_IMAGES}-px{DEFAULT_SIZE}-seed{DEFAULT_SEED}"
    return Path(root) / name


def ensure_default_dataset(progress: Progress = no_progress) -> Path:
    """Path of the default dataset's ``dataset.json``, generated on first use (safe if two processes race)."""
    out = default_dataset_dir()
    if (out / "dataset.json").is_file():
        return out / "dataset.json"
    return _generate(out, DEFAULT_IMAGES, DEFAULT_SIZE, DEFAULT_SEED, 0.1, 0.1, progress, replace=False)


def render_sample(out: Path, seed: int = 12345, size: int = 256) -> tuple[Path, list[str]]:
    """Render one fresh scene (not from the dataset) as a PNG of ``size`` px; returns (path, true captions)."""
    rng = random.Random(seed)
    scene = sample_scene(rng, size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    render_scene(scene, rng).save(out)
    return out, describe_scene(scene, rng)
