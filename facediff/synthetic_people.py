"""Who each synthetic face shows: a :class:`Person` of an age and a gender, and its UTKFace name.

A synthetic face can be a :class:`Person` of an age and a gender, drawn visibly
(``demo-data`` always does, for attribute controls): children have smaller, rounder faces
with larger eyes; hair greys from 20 and is white by 70, with lines beside the nose and
under the eyes from 30, deeper with age; women have long hair falling beside the face
onto the shoulders and red lips, men shorter hair and, past 15, a stubble shadow on the
jaw. Ages spread evenly over 0-90 and the genders are balanced within each category.
``demo-data`` names files the UTKFace way behind the category prefix
(``white_63_1_0_20170101020000007.png``: age, gender 0 male / 1 female, race, a made-up
date), so ``prepare --attributes utkface`` reads them back.

:mod:`facediff.synthetic` draws these cues; this module decides who each face is, gives the
attribute labels of ``make_faces(..., people=True)`` and the demo files' names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from facediff.attributes import (
    DEFAULT_AGE_EDGES,
    GENDERS,
    AttributeSet,
    age_attribute,
    gender_attribute,
)
from facediff.categories import DEFAULT_CATEGORIES, CategoryMap

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Person:
    """Who a face shows: an age in years and a UTKFace gender code (0 male, 1 female)."""

    age: int
    gender: int

    @property
    def gender_name(self) -> str:
        return GENDERS[self.gender]


MAX_DEMO_AGE = 90
_GOLDEN = 0.6180339887498949
#: UTKFace race codes (0 White, 1 Black, 2 Asian, 3 Indian, 4 Others) by category prefix.
_RACE_CODES = {"white": 0, "black": 1, "asian": 2, "indian": 3}


def person_of(seed: int, label: int, index: int) -> Person:
    """The person of image ``index`` of category ``label``: ages follow a golden-ratio
    sequence from a seeded start (evenly spread over 0-90 however many are drawn);
    genders come in pairs (one man, one woman, in a seeded order)."""
    start = np.random.default_rng([seed, label, 104_729]).uniform()
    age = int(((start + index * _GOLDEN) % 1.0) * (MAX_DEMO_AGE + 1))
    flip = int(np.random.default_rng([seed, label, index // 2, 7_919]).integers(0, 2))
    return Person(age=age, gender=(index % 2) ^ flip)


def face_attributes(
    per_category: int,
    seed: int = 0,
    categories: CategoryMap = DEFAULT_CATEGORIES,
    age_edges: tuple[int, ...] = DEFAULT_AGE_EDGES,
) -> tuple[AttributeSet, torch.Tensor]:
    """The attributes (age bucketed by ``age_edges``, gender) of ``make_faces(...,
    people=True)``, in its order: the set and its int64 N×2 value indices."""
    import torch

    attributes = AttributeSet((age_attribute(age_edges), gender_attribute()))
    age = attributes.get("age")
    rows = [
        [age.index_of_raw(p.age), p.gender]
        for label in range(len(categories))
        for p in (person_of(seed, label, i) for i in range(per_category))
    ]
    return attributes, torch.tensor(rows, dtype=torch.int64).reshape(-1, 2)


def demo_name(prefix: str, label: int, index: int, person: Person) -> str:
    """``white_63_1_0_20170101020000007.png``: UTKFace's ``[age]_[gender]_[race]_[date]``
    behind the category prefix (the date is made up, unique per label and index)."""
    race = _RACE_CODES.get(prefix.lower(), 4)
    return f"{prefix}_{person.age}_{person.gender}_{race}_20170101{label:02d}{index:07d}.png"


__all__ = [
    "MAX_DEMO_AGE",
    "Person",
    "demo_name",
    "face_attributes",
    "person_of",
]
