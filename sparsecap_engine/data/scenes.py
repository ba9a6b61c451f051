"""Scenes of the embedded dataset: 1-4 coloured shapes (colour x shape x size) placed without overlap on a light
background, their geometry (spatial relations, positions in the image) and their rendering (anti-aliased)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

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
