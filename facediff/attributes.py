"""Per-image attributes beyond the category: gender and age (docs/architecture.md).

An :class:`Attribute` is a named, finite vocabulary the model is conditioned on:
``gender`` (``male``, ``female``) or ``age`` bucketed by lower edges (default decades:
``0-9``, ``10-19``, … ``90+``). Each attribute has its own null value, index
``len(values)``, used for unknown labels, for dropout while training and for "leave it
free" while sampling. An :class:`AttributeSet` is the ordered set a dataset and a model
carry; a model trained without attributes has the empty set and behaves as before.

Raw values are read from file names (:func:`parse_utkface`, UTKFace's
``[age]_[gender]_[race]_[date].jpg``, optionally behind a category prefix such as
``white_``) or from a CSV; values that are missing or malformed stay unknown with a
reason, never guessed.

This module imports only the standard library: ``facediff export`` copies it next to
``pipeline.py`` and ``guidance.py``, where the pipeline imports it without facediff.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

GENDERS = ("male", "female")
#: Lower edges of the age buckets after the first (which starts at 0): decades.
DEFAULT_AGE_EDGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: Oldest plausible age; larger numbers are malformed labels.
MAX_AGE = 130
_GENDER_ALIASES = {"m": "male", "man": "male", "f": "female", "woman": "female"}


def age_bucket_names(edges: Sequence[int]) -> tuple[str, ...]:
    """``(10, 20)`` → ``("0-9", "10-19", "20+")``."""
    lows = (0, *edges)
    names = [f"{lo}-{hi - 1}" for lo, hi in zip(lows, edges)]
    return (*names, f"{lows[-1]}+")


def parse_age_edges(text: str) -> tuple[int, ...]:
    """``"10,20,30"`` → ``(10, 20, 30)``; strictly increasing positive integers."""
    try:
        edges = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"age edges must be comma-separated integers; got {text!r}") from None
    if not edges or edges[0] <= 0 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"age edges must be increasing positive integers; got {text!r}")
    return edges


@dataclass(frozen=True)
class Attribute:
    """One conditioning attribute: its name, its values and, for numbers, bucket edges."""

    name: str
    values: tuple[str, ...]
    edges: tuple[int, ...] = ()  # numeric attributes only: lower edges after 0

    @property
    def null(self) -> int:
        """The index meaning unknown / dropped / free."""
        return len(self.values)

    @property
    def numeric(self) -> bool:
        return bool(self.edges)

    def index_of_raw(self, raw: Any) -> int | None:
        """The value index of a stored raw label (an age number or a gender name);
        None when the raw value is unknown (None)."""
        if raw is None:
            return None
        if self.numeric:
            age = float(raw)
            return sum(1 for e in self.edges if age >= e)
        return self.values.index(str(raw))

    def find(self, text: str) -> int:
        """The value index a user's query names: a value (``female``, ``f``, ``60-69``)
        or, for numbers, a number inside a bucket (``65``). ``ValueError`` lists the
        choices."""
        key = text.strip().lower()
        lowered = [v.lower() for v in self.values]
        if key in lowered:
            return lowered.index(key)
        if not self.numeric and _GENDER_ALIASES.get(key) in self.values:
            return self.values.index(_GENDER_ALIASES[key])
        if self.numeric and re.fullmatch(r"\d+(\.\d+)?", key):
            age = float(key)
            if age <= MAX_AGE:
                return int(self.index_of_raw(age))  # type: ignore[arg-type]
        raise ValueError(f"unknown {self.name} {text!r}; choose from {', '.join(self.values)}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "values": list(self.values)}
        if self.edges:
            d["edges"] = list(self.edges)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attribute:
        name, values = d["name"], tuple(str(v) for v in d["values"])
        edges = tuple(int(e) for e in d.get("edges", ()))
        if not isinstance(name, str) or not values or len(set(values)) != len(values):
            raise ValueError(f"invalid attribute {d!r}")
        if edges and len(values) != len(edges) + 1:
            raise ValueError(f"attribute {name!r}: {len(edges)} edges need {len(edges) + 1} values")
        return cls(name, values, edges)


def gender_attribute() -> Attribute:
    return Attribute("gender", GENDERS)


def age_attribute(edges: Sequence[int] = DEFAULT_AGE_EDGES) -> Attribute:
    edges = tuple(int(e) for e in edges)
    return Attribute("age", age_bucket_names(edges), edges)


@dataclass(frozen=True)
class AttributeSet:
    """The ordered attributes of a dataset or model (empty: category only)."""

    attributes: tuple[Attribute, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.attributes)

    def __iter__(self):
        return iter(self.attributes)

    def __bool__(self) -> bool:
        return bool(self.attributes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Values per attribute, null excluded (``ModelConfig.attribute_sizes``)."""
        return tuple(len(a.values) for a in self.attributes)

    def get(self, name: str) -> Attribute:
        for a in self.attributes:
            if a.name == name:
                return a
        have = ", ".join(self.names) or "none"
        raise ValueError(f"this model has no attribute {name!r} (it has: {have})")

    def position(self, name: str) -> int:
        return self.names.index(self.get(name).name)

    def nulls(self) -> tuple[int, ...]:
        return tuple(a.null for a in self.attributes)

    def request(self, wanted: dict[str, str | None]) -> tuple[int, ...]:
        """Attribute indices for a sampling request ``{"gender": "female", "age": None}``:
        named values, null for the free ones. ``ValueError`` for unknown names or values."""
        for name in wanted:
            self.get(name)
        out = []
        for a in self.attributes:
            text = wanted.get(a.name)
            out.append(a.null if text is None else a.find(text))
        return tuple(out)

    def to_list(self) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self.attributes]

    @classmethod
    def from_list(cls, items: Iterable[dict[str, Any]] | None) -> AttributeSet:
        attrs = tuple(Attribute.from_dict(d) for d in (items or ()))
        if len({a.name for a in attrs}) != len(attrs):
            raise ValueError("attribute names must be unique")
        return cls(attrs)


def embedding_sizes(num_categories: int, attribute_sizes: Sequence[int]) -> tuple[int, ...]:
    """Rows of each column of the summed class-embedding table, nulls included:
    ``(C + 1, V₁ + 1, V₂ + 1, …)``."""
    return (num_categories + 1, *(int(s) + 1 for s in attribute_sizes))


# ------------------------------------------------------------------ raw labels

_UTK = re.compile(r"^(?:[A-Za-z]+[_-])?(\d+)_(\d+)_(\d+)_\d+")


def parse_utkface(filename: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Raw ``{"age": int, "gender": "male"|"female"}`` from a UTKFace file name, with
    ``{"age": reason}`` for each value that is missing or malformed (then absent from
    the first dict). Accepts a category prefix (``white_25_1_0_2017….jpg.chip.jpg``)."""
    m = _UTK.match(filename)
    if m is None:
        reason = "file name is not [age]_[gender]_[race]_[date]"
        return {}, {"age": reason, "gender": reason}
    values: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    age, gender = int(m.group(1)), int(m.group(2))
    if 0 <= age <= MAX_AGE:
        values["age"] = age
    else:
        reasons["age"] = f"age {age} out of range 0-{MAX_AGE}"
    if gender in (0, 1):
        values["gender"] = GENDERS[gender]
    else:
        reasons["gender"] = f"gender code {gender} is neither 0 (male) nor 1 (female)"
    return values, reasons


def parse_raw_value(attribute: Attribute, text: str) -> tuple[Any, str | None]:
    """A CSV cell → (raw value, None) or (None, reason). Empty cells are unknown."""
    t = text.strip()
    if not t:
        return None, "empty"
    if attribute.numeric:
        try:
            age = float(t)
        except ValueError:
            return None, f"{attribute.name} {t!r} is not a number"
        if not math.isfinite(age) or not 0 <= age <= MAX_AGE:
            return None, f"{attribute.name} {t!r} out of range 0-{MAX_AGE}"
        return (int(age) if age.is_integer() else age), None
    key = t.lower()
    key = _GENDER_ALIASES.get(key, key)
    if attribute.name == "gender" and key in ("0", "1"):
        key = GENDERS[int(key)]
    if key in attribute.values:
        return key, None
    return None, f"{attribute.name} {t!r} is not one of {', '.join(attribute.values)}"
