"""Procedurally drawn "faces" whose look depends on the category.

They serve the tests and the out-of-the-box demo: a small model can learn them in
minutes on a CPU, so conditional training can be checked end to end (samples asked
for category X are recognised as X).

Each category has a *look* — skin tone, face shape (round / oval / long) and hair
colour and style — and every image adds its own random variation: background and
shirt colour, position, size, lighting, eye placement and expression. Skin tones of
neighbouring looks overlap under the lighting variation, so no single pixel tells the
categories apart; the combination of tone, shape and hair does.

Each face can also be drawn as a :class:`~facediff.synthetic_people.Person` of an age and
a gender (``demo-data`` always does, for attribute controls); who each face shows, and its
UTKFace-style file name, are :mod:`facediff.synthetic_people`.

Images are drawn with ``PIL.ImageDraw`` at a multiple of the requested size and
downscaled with a Lanczos filter (supersampling, for anti-aliased edges). Image *i* of
category *k* depends only on ``(seed, k, i)``, not on how many images are asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from facediff.categories import DEFAULT_CATEGORIES, CategoryMap
from facediff.config import DEMO_PER_CATEGORY, DEMO_SIZE
from facediff.errors import FacediffError
from facediff.files import save_image_atomic
from facediff.synthetic_people import Person, demo_name, person_of

if TYPE_CHECKING:
    import torch


RGB = tuple[int, int, int]

# Hair styles (drawn by _draw_hair_back / _draw_hair_front).
LONG, BANGS, SHORT, BUN = "long", "bangs", "short", "bun"


@dataclass(frozen=True)
class Look:
    """What a category's faces have in common."""

    skin: RGB
    aspect: float  # face height / width: ~1.0 round, ~1.25 oval, ~1.45 long
    hair: RGB
    hair_style: str


# The three default looks, in label order (Indian, Oriental, European).
_BASE_LOOKS = (
    Look(skin=(165, 112, 78), aspect=1.22, hair=(22, 18, 16), hair_style=LONG),
    Look(skin=(226, 186, 148), aspect=1.0, hair=(14, 14, 20), hair_style=BANGS),
    Look(skin=(242, 200, 182), aspect=1.45, hair=(214, 172, 92), hair_style=SHORT),
)
# Vivid hair colours for user categories beyond the default looks: unlike any default.
_EXTRA_HAIR = (
    (200, 40, 30),
    (40, 90, 210),
    (40, 160, 60),
    (150, 60, 190),
    (235, 120, 20),
    (20, 170, 170),
    (230, 60, 150),
    (120, 120, 120),
)
_STYLES = (LONG, BANGS, SHORT, BUN)
_ASPECTS = (1.0, 1.22, 1.45)


def category_look(index: int) -> Look:
    """The look of label ``index``: a default look, or one derived from the index."""
    if index < len(_BASE_LOOKS):
        return _BASE_LOOKS[index]
    k = index - len(_BASE_LOOKS)
    rng = np.random.default_rng([7919, index])
    tone = rng.uniform(0.0, 1.0)  # dark .. light skin
    skin = tuple(round(a + (b - a) * tone) for a, b in zip((120, 80, 55), (245, 210, 185)))
    return Look(
        skin=skin,  # type: ignore[arg-type]
        aspect=_ASPECTS[k % len(_ASPECTS)],
        hair=_EXTRA_HAIR[k % len(_EXTRA_HAIR)],
        hair_style=_STYLES[(k // len(_EXTRA_HAIR) + k) % len(_STYLES)],
    )


def _scale(color: RGB, factor: float) -> RGB:
    return tuple(int(np.clip(round(c * factor), 0, 255)) for c in color)  # type: ignore[return-value]


def _jitter(color: RGB, rng: np.random.Generator, amount: float) -> RGB:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in color)  # type: ignore[return-value]


@dataclass(frozen=True)
class _Face:
    """Geometry and colours of one drawn face, in canvas pixels."""

    cx: float
    cy: float
    rx: float  # half width of the face
    ry: float  # half height
    skin: RGB
    hair: RGB
    style: str
    eye_dy: float  # eye height relative to ry (negative = above centre)
    eye_dx: float  # eye spacing relative to rx
    eye_r: float  # eye radius relative to rx
    smile: float  # -1 frown .. 1 smile


def _sample_face(look: Look, rng: np.random.Generator, canvas: int) -> _Face:
    light = rng.uniform(0.82, 1.12)  # lighting: makes skin tones of looks overlap
    rx = canvas * rng.uniform(0.2, 0.25)
    ry = rx * look.aspect * rng.uniform(0.95, 1.05)
    return _Face(
        cx=canvas * (0.5 + rng.uniform(-0.07, 0.07)),
        cy=canvas * (0.5 + rng.uniform(-0.06, 0.06)),
        rx=rx,
        ry=ry,
        skin=_scale(_jitter(look.skin, rng, 8), light),
        hair=_scale(_jitter(look.hair, rng, 10), light),
        style=look.hair_style,
        eye_dy=rng.uniform(-0.22, -0.08),
        eye_dx=rng.uniform(0.32, 0.45),
        eye_r=rng.uniform(0.09, 0.13),
        smile=rng.uniform(-0.6, 1.0),
    )


def _blend(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


_WHITE_HAIR = (228, 228, 232)


def _aged(f: _Face, person: Person) -> _Face:
    """The face ``f`` made ``person.age`` years old: children's faces smaller and rounder
    with larger eyes, hair greying from 20 (white at 70)."""
    child = max(0.0, (16 - person.age) / 16)  # 1 at birth, 0 from 16
    scale = 1.0 - 0.3 * child
    rx = f.rx * scale
    ry = rx * f.ry / f.rx * (1 - 0.15 * child)  # rounder, keeping the look's shape
    grey = float(np.clip((person.age - 20) / 50, 0.0, 1.0))
    return dataclasses.replace(
        f,
        cy=f.cy + (f.ry - ry) * 0.6,  # a smaller head sits lower, on the same shoulders
        rx=rx,
        ry=ry,
        hair=_blend(f.hair, _WHITE_HAIR, grey),
        eye_r=f.eye_r * (1 + 0.45 * child),
        eye_dy=f.eye_dy * (1 - 0.6 * child),  # children's eyes sit mid-face
    )


def _draw_long_locks(d: ImageDraw.ImageDraw, f: _Face) -> None:
    """Women: long hair falling beside the face onto the shoulders (over the shirt)."""
    for side in (-1, 1):
        x = f.cx + side * f.rx * 0.98
        d.rounded_rectangle(
            (x - f.rx * 0.34, f.cy - f.ry * 0.55, x + f.rx * 0.34, f.cy + f.ry * 1.75),
            radius=f.rx * 0.3,
            fill=f.hair,
        )


def _draw_stubble(d: ImageDraw.ImageDraw, f: _Face) -> None:
    """Men past 15: a stubble shadow over the jaw and chin."""
    shade = _blend(f.skin, (58, 46, 42), 0.42)
    d.chord(_box(f.cx, f.cy, f.rx * 0.99, f.ry * 0.99), 22, 158, fill=shade)
    d.ellipse(_box(f.cx, f.cy + f.ry * 0.45, f.rx * 0.5, f.ry * 0.17), fill=shade)


def _draw_wrinkles(d: ImageDraw.ImageDraw, f: _Face, age: int) -> None:
    """From 30: lines from the nose to the mouth corners and under the eyes, darker with age."""
    depth = float(np.clip((age - 30) / 45, 0.0, 1.0))
    if depth <= 0:
        return
    line = _scale(f.skin, 0.85 - 0.3 * depth)
    width = max(1, round(f.rx * (0.07 + 0.07 * depth)))
    ey = f.cy + f.eye_dy * f.ry
    r = f.eye_r * f.rx
    for side in (-1, 1):
        d.line(
            (
                f.cx + side * f.rx * 0.22,
                f.cy + f.ry * 0.14,
                f.cx + side * f.rx * 0.46,
                f.cy + f.ry * 0.5,
            ),
            fill=line,
            width=width,
        )
        ex = f.cx + side * f.eye_dx * f.rx
        d.arc(_box(ex, ey + r * 0.9, r * 1.4, r * 0.9), 20, 160, fill=line, width=width)


def _box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
    return (cx - rx, cy - ry, cx + rx, cy + ry)


def _draw_body(d: ImageDraw.ImageDraw, f: _Face, shirt: RGB, canvas: int) -> None:
    neck_w = f.rx * 0.45
    d.rectangle((f.cx - neck_w, f.cy + f.ry * 0.6, f.cx + neck_w, canvas), fill=_scale(f.skin, 0.9))
    d.ellipse(_box(f.cx, f.cy + f.ry * 1.05 + f.rx * 1.4, f.rx * 2.1, f.rx * 1.4), fill=shirt)


def _draw_hair_back(d: ImageDraw.ImageDraw, f: _Face, cropped: bool = False) -> None:
    if f.style == LONG:  # ``cropped`` (men): ending above the jaw
        d.rounded_rectangle(
            (
                f.cx - f.rx * 1.2,
                f.cy - f.ry * 1.15,
                f.cx + f.rx * 1.2,
                f.cy + f.ry * (0.35 if cropped else 1.25),
            ),
            radius=f.rx * 0.8,
            fill=f.hair,
        )
    elif f.style == BANGS:
        d.ellipse(_box(f.cx, f.cy - f.ry * 0.1, f.rx * 1.18, f.ry * 1.12), fill=f.hair)
    elif f.style == BUN:
        d.ellipse(_box(f.cx, f.cy - f.ry * 1.15, f.rx * 0.55, f.rx * 0.5), fill=f.hair)


def _draw_hair_front(d: ImageDraw.ImageDraw, f: _Face) -> None:
    # A chord of the head ellipse from angle a to b leaves the hairline at sin(a)·ry.
    top = _box(f.cx, f.cy, f.rx * 1.06, f.ry * 1.08)
    if f.style == LONG:  # centre parting
        d.chord(top, 205, 335, fill=f.hair)
        d.line((f.cx, f.cy - f.ry * 1.08, f.cx, f.cy - f.ry * 0.75), fill=_scale(f.skin, 0.8))
    elif f.style == BANGS:  # straight fringe low across the forehead
        d.chord(top, 195, 345, fill=f.hair)
        d.rectangle((f.cx - f.rx, f.cy - f.ry * 0.62, f.cx + f.rx, f.cy - f.ry * 0.36), fill=f.hair)
    elif f.style == SHORT:  # side-swept: a high cap, deeper on one side
        d.chord(top, 200, 340, fill=f.hair)
        d.chord(
            _box(f.cx - f.rx * 0.25, f.cy - f.ry * 0.1, f.rx * 0.9, f.ry * 0.95),
            185,
            290,
            fill=f.hair,
        )
    else:  # BUN: hair pulled back, a thin cap
        d.chord(top, 215, 325, fill=f.hair)


def _draw_features(
    d: ImageDraw.ImageDraw, f: _Face, eye_color: RGB, red_lips: bool = False
) -> None:
    ey = f.cy + f.eye_dy * f.ry
    r = f.eye_r * f.rx
    for side in (-1, 1):
        ex = f.cx + side * f.eye_dx * f.rx
        d.ellipse(_box(ex, ey, r * 1.35, r), fill=(245, 245, 240))
        d.ellipse(_box(ex, ey, r * 0.65, r * 0.65), fill=eye_color)
        brow = (ex - r * 1.4, ey - r * 2.2, ex + r * 1.4, ey - r * 1.4)
        d.line(brow, fill=_scale(f.hair, 0.9), width=max(1, int(r * 0.45)))
    nose_y = f.cy + f.ry * 0.12
    nose = (f.cx, ey + r, f.cx - r * 0.5, nose_y)
    d.line(nose, fill=_scale(f.skin, 0.78), width=max(1, int(r * 0.3)))
    mw, my = f.rx * 0.38, f.cy + f.ry * 0.45
    bend = f.ry * 0.14 * f.smile
    box = (f.cx - mw, my - abs(bend), f.cx + mw, my + abs(bend) + 1)
    width = max(1, int(r * 0.45))
    lips = (150, 50, 50)
    if red_lips:
        lips, width = (205, 25, 60), max(1, int(r * 0.8))
    if bend >= 0:
        d.arc(box, 10, 170, fill=lips, width=width)
    else:
        d.arc(box, 190, 350, fill=lips, width=width)


def draw_face(
    look: Look, rng: np.random.Generator, size: int, person: Person | None = None
) -> Image.Image:
    """One face of ``look`` with per-image variation from ``rng``, ``size``×``size`` RGB;
    with ``person``, drawn at that age and gender (the same ``rng`` draws either way)."""
    supersample = 4 if size <= 128 else 2
    canvas = size * supersample
    background = tuple(int(v) for v in rng.integers(40, 225, size=3))
    shirt = tuple(int(v) for v in rng.integers(20, 235, size=3))
    eye_color = tuple(int(v) for v in rng.integers(20, 110, size=3))
    f = _sample_face(look, rng, canvas)
    if person is not None:
        f = _aged(f, person)
    im = Image.new("RGB", (canvas, canvas), background)
    d = ImageDraw.Draw(im)
    _draw_hair_back(d, f, cropped=person is not None and person.gender == 0)
    _draw_body(d, f, shirt, canvas)  # type: ignore[arg-type]
    if person is not None and person.gender == 1:
        _draw_long_locks(d, f)
    for side in (-1, 1):  # ears
        d.ellipse(_box(f.cx + side * f.rx * 0.98, f.cy, f.rx * 0.16, f.ry * 0.2), fill=f.skin)
    d.ellipse(_box(f.cx, f.cy, f.rx, f.ry), fill=f.skin)
    if person is not None:
        if person.gender == 0 and person.age >= 16:
            _draw_stubble(d, f)
        _draw_wrinkles(d, f, person.age)
    _draw_hair_front(d, f)
    woman = person is not None and person.gender == 1
    _draw_features(d, f, eye_color, red_lips=woman)  # type: ignore[arg-type]
    return im.resize((size, size), Image.LANCZOS)


def _face_rng(seed: int, label: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, label, index])


def make_faces(
    per_category: int,
    size: int = 64,
    seed: int = 0,
    categories: CategoryMap = DEFAULT_CATEGORIES,
    *,
    people: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_category`` faces of each category: uint8 N×3×S×S images and int64 labels.

    The label is the category's index in ``categories``; images are ordered by label,
    then by index within the category. Deterministic given ``seed``. ``people`` draws
    each face at the age and gender of :func:`person_of` (labels: :func:`face_attributes`).
    """
    import torch  # here, so the CLI reads this module's defaults without loading torch

    if per_category < 0:
        raise FacediffError(f"per_category must be >= 0, got {per_category}")
    if size < 8:
        raise FacediffError(f"size must be >= 8, got {size}")
    n = per_category * len(categories)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for label in range(len(categories)):
        look = category_look(label)
        for i in range(per_category):
            j = label * per_category + i
            person = person_of(seed, label, i) if people else None
            images[j] = np.asarray(draw_face(look, _face_rng(seed, label, i), size, person))
            labels[j] = label
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def make_demo_data(
    out: Path,
    per_category: int = DEMO_PER_CATEGORY,
    size: int = DEMO_SIZE,
    seed: int = 0,
    categories: CategoryMap = DEFAULT_CATEGORIES,
    people: bool = True,
) -> list[Path]:
    """Write synthetic faces of people (:func:`person_of`) into a new folder ``out``,
    named ``<prefix>_<age>_<gender>_<race>_<date>.png`` (:func:`demo_name`).

    The result is a raw folder for ``facediff prepare`` (``--attributes utkface`` reads
    the ages and genders back). With ``people=False`` the faces show their category
    only (no age or gender cues, which a 3-minute CPU run cannot learn as well) and
    are named ``<prefix>_0001.png``. Refuses an ``out`` that exists and is not an
    empty folder. Each image is written whole (:func:`~facediff.files.save_image_atomic`);
    if writing stops (a full disk, Ctrl-C), the images written are removed again, and
    ``out`` too if this call made it.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FacediffError(f"{out} already exists and is not an empty folder")
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    try:
        for label, category in enumerate(categories):
            look = category_look(label)
            for i in range(per_category):
                person = person_of(seed, label, i) if people else None
                if person is None:
                    path = out / f"{category.prefix}_{i + 1:04d}.png"
                else:
                    path = out / demo_name(category.prefix, label, i, person)
                save_image_atomic(draw_face(look, _face_rng(seed, label, i), size, person), path)
                paths.append(path)
    except BaseException:
        for path in paths:
            path.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return paths


def write_synthetic_prepared(
    out: Path,
    per_category: int,
    size: int,
    seed: int = 0,
    *,
    attributes: bool = False,
    age_edges: tuple[int, ...] | None = None,
) -> Path:
    """Draw demo faces into a temporary raw folder and ``prepare`` them into ``out``;
    ``attributes`` prepares them with their ages and genders (``--attributes utkface``)."""
    from facediff.preparation import prepare  # imported here: prepare is the heavier module

    with tempfile.TemporaryDirectory(prefix="facediff-synthetic-") as tmp:
        raw = Path(tmp) / "raw"
        make_demo_data(raw, per_category=per_category, size=size, seed=seed)
        utk = "utkface" if attributes else None
        prepare(raw, Path(out), size=size, workers=1, attributes=utk, age_edges=age_edges)
    return Path(out)


__all__ = [
    "Look",
    "category_look",
    "draw_face",
    "make_demo_data",
    "make_faces",
    "write_synthetic_prepared",
]
