"""What a sampling request asks of a model's attributes (``--gender female --age 60-69``).

:func:`resolve_request` checks a request against the model's :class:`AttributeSet` and
returns the value index of every attribute (its null when left free), each one's own
guidance scale if it has one, and the canonical values asked for, which name the
request in sample folders (``I_female_60-69``) and in ``samples.json``.
Errors are :class:`~facediff.errors.ConfigError` s naming the option
(``--age: unknown age '200-209'; choose from 0-9, …``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from facediff.attributes import AttributeSet
from facediff.errors import ConfigError

#: Characters a value may keep in a folder name (others become ``-``).
_SAFE = re.compile(r"[^A-Za-z0-9+.-]")


def _escaped(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class AttributeRequest:
    """A checked request: one entry per attribute of the model, in its order."""

    names: tuple[str, ...] = ()  # the model's attributes
    indices: tuple[int, ...] = ()  # value index per attribute (its null when free)
    nulls: tuple[int, ...] = ()
    scales: tuple[float | None, ...] = ()  # own guidance scale, or None (rides along)
    values: dict[str, str] = field(default_factory=dict)  # requested only, canonical names

    def label(self, mix_label: str) -> str:
        """The sample-folder label of ``mix_label`` under this request: ``I`` with nothing
        requested (the folders of before), ``I_female_60-69`` with gender and age."""
        return "_".join([mix_label, *(_SAFE.sub("-", v) for v in self.values.values())])

    @property
    def guidance(self) -> dict[str, float]:
        """The attributes with their own guidance scale, by name."""
        return {n: s for n, s in zip(self.names, self.scales) if s is not None}


def resolve_request(
    attributes: AttributeSet,
    wanted: Mapping[str, str | None] | None = None,
    guidance: Mapping[str, float] | None = None,
) -> AttributeRequest:
    """Check ``wanted`` (attribute name → value text, None = free) and ``guidance``
    (attribute name → its own scale) against the model's ``attributes``."""
    wanted = {k: v for k, v in (wanted or {}).items() if v is not None}
    guidance = dict(guidance or {})
    for name in [*wanted, *guidance]:
        if not attributes:
            raise ConfigError(f"{{}}: this model was trained without attributes ({name!r})", name)
        try:
            attributes.get(name)
        except ValueError as e:
            field_name = name if name in wanted else "attribute_guidance"
            raise ConfigError("{}: " + _escaped(str(e)), field_name) from None
    indices = []
    values: dict[str, str] = {}
    for a in attributes:
        text = wanted.get(a.name)
        if text is None:
            indices.append(a.null)
            continue
        try:
            index = a.find(str(text))
        except ValueError as e:
            raise ConfigError("{}: " + _escaped(str(e)), a.name) from None
        indices.append(index)
        values[a.name] = a.values[index]
    scales: list[float | None] = []
    for a in attributes:
        scale = guidance.get(a.name)
        if scale is not None:
            scale = float(scale)
            if not (math.isfinite(scale) and scale >= 0):
                raise ConfigError(
                    f"{{}}: {a.name}={scale} must be a finite number >= 0", "attribute_guidance"
                )
            if a.name not in values:
                raise ConfigError(
                    f"{{}}: {a.name} has its own scale but {{}} is not requested",
                    "attribute_guidance",
                    a.name,
                )
        scales.append(scale)
    return AttributeRequest(
        attributes.names, tuple(indices), attributes.nulls(), tuple(scales), values
    )
