"""The caption grammar of the embedded dataset: object lists, spatial relations, positions and counts, with synonyms;
every caption states only what the scene's geometry makes true."""

from __future__ import annotations

import random
from typing import Any

from sparsecap_engine.data.scenes import Scene, SceneObject, image_position, spatial_relations

CAPTIONS_PER_IMAGE = 5

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
