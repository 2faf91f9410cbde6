"""Mix specifications: which categories a hybrid face draws on, and with what weights.

Accepted forms (codes or names, case-insensitive)::

    OIE                 equal weights over O, I and E
    O+I                 equal weights over O and I
    Oriental+Indian     the same, by name
    O:0.7,I:0.3         explicit weights (normalised to sum to 1)
    O                   a single category (ordinary conditional generation)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from facediff.categories import CategoryMap
from facediff.errors import UsageError
from facediff.guidance import parse_mix_spec

#: The mixes sampled when the user names none.
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

    @property
    def weight_map(self) -> dict[int, float]:
        """``{label index: weight}``: the mix whatever order its categories were named in."""
        return dict(zip(self.indices, self.weights))

    def to_dict(self, categories: CategoryMap) -> dict[str, object]:
        return {
            "label": self.label,
            "weights": {categories[i].code: w for i, w in zip(self.indices, self.weights)},
        }


def parse_mix(spec: str, categories: CategoryMap) -> Mix:
    """Parse a mix spec into a normalised :class:`Mix` (see module docstring).

    The grammar is :func:`facediff.guidance.parse_mix_spec`, shared with the pipeline.
    """
    names = [c.name for c in categories]
    try:
        indices, weights = parse_mix_spec(spec, categories.codes, names)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return Mix(label=_label(indices, weights, categories), indices=indices, weights=weights)


def unique_mixes(mixes: list[Mix], specs: list[str] | None = None) -> list[Mix]:
    """``mixes`` without repeats; two *different* mixes with the same label (``O:0.7,I:0.3``
    and ``O:0.704,I:0.296`` are both ``O70I30``) are refused, since each label is one
    folder of images and one row of results."""
    out: list[Mix] = []
    for k, m in enumerate(mixes):
        if any(same_weights(o.weight_map, m.weight_map) for o in out):  # OI after IO
            continue
        same = next((o for o in out if o.label == m.label), None)
        if same is None:
            out.append(m)
        elif same.indices != m.indices or any(
            abs(a - b) > 1e-9 for a, b in zip(same.weights, m.weights)
        ):
            what = f"{specs[k]!r}" if specs else f"{m.weights}"
            raise UsageError(
                f"--mix {what} and an earlier mix both get the label {m.label} but differ in "
                "weights; give weights that differ in whole percents, or drop one"
            )
    return out


def same_weights(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> bool:
    """Whether two ``{category: weight}`` maps weigh the same categories alike (to 1e-6,
    what a record's JSON keeps); False for an empty or non-numeric one."""
    try:
        return (
            bool(a)
            and a.keys() == b.keys()
            and all(abs(float(a[k]) - float(b[k])) <= 1e-6 for k in a)
        )
    except (TypeError, ValueError, AttributeError):
        return False


def _label(indices: Sequence[int], weights: Sequence[float], categories: CategoryMap) -> str:
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


def resolve_mixes(
    categories: CategoryMap,
    mixes: Sequence[str] | None = None,
    single: Sequence[str] | None = None,
) -> list[Mix]:
    """Mixes to sample: the named categories, then the mix specs; all defaults if neither."""
    if not mixes and not single:
        return default_mixes(categories)
    specs = [*(single or ()), *(mixes or ())]
    parsed = [_parse_category(s, categories) for s in single or ()]
    parsed += [parse_mix(s, categories) for s in mixes or ()]
    return unique_mixes(parsed, specs)


def _parse_category(spec: str, categories: CategoryMap) -> Mix:
    """One ``--category``: a single code or name. ``-c O,I`` is refused, not sampled as
    the hybrid OI: a user who lists categories there means each one on its own."""
    if not spec.strip():
        raise UsageError("invalid --category '': name a category, e.g. -c " + categories[0].code)
    mix = parse_mix(spec, categories)
    if not mix.is_single:
        codes = [categories[i].code for i in mix.indices]
        raise UsageError(
            f"invalid --category {spec!r}: it names {len(codes)} categories; repeat the "
            f"option for each ({' '.join('-c ' + c for c in codes)}), or use --mix {spec} "
            "for a hybrid"
        )
    return mix
