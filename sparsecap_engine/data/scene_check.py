"""Judge a caption of a synthetic scene: does it name every object's colour and shape, and nothing that isn't there?

The vocabularies come from the grammar in :mod:`sparsecap_engine.data.synthetic` (colours, shape synonyms and
plurals, size words, generic nouns, number words), so the judge accepts exactly the words the captions are trained on.

A *mention* is a shape word (any synonym, singular or plural), optionally preceded by a colour, or a colour followed by
a generic noun ("red shape") or by nothing nameable. Size words may stand before or between them ("a small red ball",
"two big blue boxes"). Its count is the number word in front ("two red circles" = 2), else 1 for a singular noun, or
"several" for a bare plural (all objects of that kind, at least 2).

Verdict: an object is right when a mention names its colour together with its shape; mentions of one colour+shape
cover at most as many objects as they state (``a red circle and a red circle`` covers two). A mention is *false* when
it states more objects than the scene holds of that kind: a colour+shape pair, a bare shape or a bare colour that is
absent (or too few). A scene is right when every object is right and no mention is false.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from sparsecap_engine.data.scene_grammar import GENERIC_NOUNS, NUMBERS, SHAPE_WORDS, SIZE_WORDS, _plural, tokenize
from sparsecap_engine.data.scenes import COLORS, Scene, render_scene, sample_scene

SEVERAL = -1  # count of a bare plural ("red circles"): every object of that kind, at least two

_SHAPE_OF: dict[str, tuple[str, bool]] = {}  # word -> (shape, plural)
for _shape, _words in SHAPE_WORDS.items():
    for _w in _words:
        _SHAPE_OF[_w] = (_shape, False)
        _SHAPE_OF[_plural(_w)] = (_shape, True)
_GENERIC_OF: dict[str, bool] = {w: False for w in GENERIC_NOUNS} | {_plural(w): True for w in GENERIC_NOUNS}
_SIZE_WORDS = frozenset(w for words in SIZE_WORDS.values() for w in words)
_NUMBER_OF = {word: n for n, word in NUMBERS.items()}


class HasColorShape(Protocol):
    """Anything with a ``color`` and a ``shape`` name (e.g. :class:`~sparsecap_engine.data.synthetic.SceneObject`)."""

    @property
    def color(self) -> str: ...

    @property
    def shape(self) -> str: ...


@dataclass(frozen=True)
class Mention:
    """One noun phrase of a caption: colour and/or shape (None = not named) and the stated count."""

    color: str | None
    shape: str | None
    count: int  # >= 1, or SEVERAL for a bare plural
    text: str


@dataclass
class Verdict:
    """The judgement of one caption: per-object rightness (scene order), false mentions, and the scene verdict."""

    objects_right: list[bool]
    false_mentions: list[str] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)

    @property
    def right(self) -> bool:
        return all(self.objects_right) and not self.false_mentions

    @property
    def truthful(self) -> bool:
        """Nothing false is named (vacuously true for a caption that names no colour or shape)."""
        return not self.false_mentions

    @property
    def n_right(self) -> int:
        return sum(self.objects_right)


def find_mentions(caption: str) -> list[Mention]:
    """The colour/shape noun phrases of a caption (lower-cased, commas ignored), left to right."""
    tokens = tokenize(caption.lower())
    out: list[Mention] = []
    i = 0
    while i < len(tokens):
        start = i
        while i < len(tokens) and tokens[i] in _SIZE_WORDS:
            i += 1
        if i == len(tokens):
            break
        color = tokens[i] if tokens[i] in COLORS else None
        j = i + 1 if color else i
        while color and j < len(tokens) and tokens[j] in _SIZE_WORDS:  # lenient: "red small ball"
            j += 1
        word = tokens[j] if j < len(tokens) else ""
        if word in _SHAPE_OF:
            shape, plural = _SHAPE_OF[word]
            end = j + 1
        elif color:
            shape, plural = None, _GENERIC_OF.get(word, False)
            end = j + 1 if word in _GENERIC_OF else i + 1
        else:
            i = start + 1
            continue
        before = tokens[start - 1] if start > 0 else ""
        count = _NUMBER_OF.get(before, SEVERAL if plural else 1)
        text = " ".join(([before] if before in _NUMBER_OF else []) + tokens[i:end])  # size words left out
        out.append(Mention(color, shape, count, text))
        i = end
    return out


def judge_caption(objects: Sequence[HasColorShape], caption: str) -> Verdict:
    """Which of ``objects`` the caption names by colour and shape, and which of its mentions the scene contradicts."""
    mentions = find_mentions(caption)
    pairs = Counter((o.color, o.shape) for o in objects)
    shapes = Counter(o.shape for o in objects)
    colors = Counter(o.color for o in objects)
    stated: Counter[tuple[str, str]] = Counter()
    several: set[tuple[str, str]] = set()
    false: list[str] = []
    for m in mentions:
        if m.color and m.shape:
            key = (m.color, m.shape)
            if m.count == SEVERAL:
                several.add(key)
            else:
                stated[key] += m.count
            continue
        have = colors[m.color] if m.color else shapes[m.shape]
        if have < (2 if m.count == SEVERAL else m.count):
            false.append(m.text)
    for key in several:
        if pairs[key] < 2:
            false.append(f"{key[0]} {key[1]}s (several; the scene has {pairs[key]})")
        else:
            stated[key] = max(stated[key], pairs[key])
    for key, q in stated.items():
        if q > pairs[key]:
            false.append(f"{q} x {key[0]} {key[1]} (the scene has {pairs[key]})")
    covered = dict(stated)
    right: list[bool] = []
    for o in objects:
        key = (o.color, o.shape)
        right.append(covered.get(key, 0) > 0)
        if key in covered:
            covered[key] -= 1
    return Verdict(right, false, mentions)


def fresh_scene(seed: int, size: int = 256) -> tuple[Scene, Image.Image]:
    """The scene and image that ``sparsecap data scene --seed SEED --size SIZE`` renders (same RNG use as
    :func:`~sparsecap_engine.data.synthetic.render_sample`; integer seeds never collide with the dataset's)."""
    rng = random.Random(seed)
    scene = sample_scene(rng, size)
    return scene, render_scene(scene, rng)
