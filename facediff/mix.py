"""Mix specifications: which categories a hybrid face draws on, and with what weights.

Accepted forms (codes or names, case-insensitive)::

    OIE                 equal weights over O, I and E
    O+I                 equal weights over O and I
    Oriental+Indian     the same, by name
    O:0.7,I:0.3         explicit weights (normalised to sum to 1)
    O                   a single category (ordinary conditional generation)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from facediff.categories import CategoryMap
from facediff.errors import FacediffError, UsageError

#: The mixes sampled when the user names none (DESIGN §3).
DEFAULT_MIXES = ("OI", "OE", "IE", "OIE")


@dataclass(frozen=True)
class Mix:
    """A normalised mix: label indices with weights summing to 1."""

    label: str  # folder-safe name, e.g. "OIE" or "O70I30"
    indices: tuple[int, ...]
    weights: tuple[float, ...]

    @property
    def is_single(self) -> bool:
        return len(self.indices) == 1

    def to_dict(self, categories: CategoryMap) -> dict[str, object]:
        return {
            "label": self.label,
            "weights": {categories[i].code: w for i, w in zip(self.indices, self.weights)},
        }


def _valid_codes(categories: CategoryMap) -> str:
    return ", ".join(f"{c.code} ({c.name})" for c in categories)


def _index(term: str, spec: str, categories: CategoryMap) -> int:
    try:
        return categories.index(term)
    except FacediffError:
        raise UsageError(
            f"unknown category {term!r} in mix {spec!r}; valid: {_valid_codes(categories)}"
        ) from None


def _weight(text: str, spec: str) -> float:
    try:
        w = float(text)
    except ValueError:
        raise UsageError(f"invalid weight {text!r} in mix {spec!r}") from None
    if not math.isfinite(w) or w <= 0:
        raise UsageError(f"weights must be positive numbers; got {text!r} in mix {spec!r}")
    return w


def parse_mix(spec: str, categories: CategoryMap) -> Mix:
    """Parse a mix spec into a normalised :class:`Mix` (see module docstring)."""
    s = spec.strip()
    if not s:
        raise UsageError("empty mix spec")
    terms: list[tuple[int, float]] = []
    if ":" in s or "," in s:
        for part in s.split(","):
            key, colon, w = part.partition(":")
            if not key.strip():
                raise UsageError(f"invalid mix {spec!r}: empty term")
            terms.append((_index(key, spec, categories), _weight(w, spec) if colon else 1.0))
    elif "+" in s:
        for part in s.split("+"):
            if not part.strip():
                raise UsageError(f"invalid mix {spec!r}: empty term")
            terms.append((_index(part, spec, categories), 1.0))
    elif re.fullmatch(r"[A-Za-z]+", s) and not _is_name(s, categories):
        terms = [(_index(ch, spec, categories), 1.0) for ch in s]
    else:
        terms = [(_index(s, spec, categories), 1.0)]

    indices = [i for i, _ in terms]
    if len(set(indices)) != len(indices):
        dup = next(categories[i].code for i in indices if indices.count(i) > 1)
        raise UsageError(f"category {dup} appears more than once in mix {spec!r}")
    total = sum(w for _, w in terms)
    weights = tuple(w / total for _, w in terms)
    return Mix(label=_label(indices, weights, categories), indices=tuple(indices), weights=weights)


def _is_name(s: str, categories: CategoryMap) -> bool:
    return any(c.name.lower() == s.lower() for c in categories)


def _label(indices: list[int], weights: tuple[float, ...], categories: CategoryMap) -> str:
    codes = [categories[i].code for i in indices]
    if max(weights) - min(weights) < 1e-9:
        return "".join(codes)
    return "".join(f"{c}{round(w * 100)}" for c, w in zip(codes, weights))


def default_mixes(categories: CategoryMap) -> list[Mix]:
    """Every single category, then the default hybrid mixes whose codes all exist."""
    mixes = [parse_mix(c.code, categories) for c in categories]
    codes = set(categories.codes)
    mixes += [parse_mix(m, categories) for m in DEFAULT_MIXES if set(m) <= codes]
    if not any(len(m.indices) > 1 for m in mixes) and len(categories) > 1:
        mixes.append(parse_mix(categories.codes, categories))
    return mixes
