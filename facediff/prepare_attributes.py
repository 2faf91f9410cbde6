"""Attribute labels at ``prepare`` (``--attributes``): where they come from, what each kept
image gets, and the counts per category (format: docs/architecture.md).

Two sources:

- ``utkface``: the file name, ``[age]_[gender]_[race]_[date].jpg`` (gender 0 male, 1
  female), optionally behind a category prefix (``white_63_1_0_2017….jpg``,
  ``white63_1_0_2017….jpg``); read with :func:`facediff.attributes.parse_utkface`.
  Attributes: ``age`` (bucketed by ``age_edges``) and ``gender``.
- a CSV file: a header row ``file,<attribute>,…`` and one row per image (paths relative
  to the raw folder, as for ``--labels``). A column named ``age`` is a number bucketed by
  ``age_edges``, ``gender`` is male/female (also m/f, 0/1), and any other column is a
  categorical attribute whose values are the column's sorted distinct non-empty cells. A
  ``category`` column is ignored, so one CSV can serve ``--labels`` and ``--attributes``.

A value that is missing or malformed is *unknown* (index -1 in the packed file), with
the reason recorded in the manifest; nothing is guessed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facediff.attributes import (
    DEFAULT_AGE_EDGES,
    Attribute,
    AttributeSet,
    age_attribute,
    gender_attribute,
    parse_age_edges,
    parse_raw_value,
    parse_utkface,
)
from facediff.categories import CategoryMap
from facediff.errors import FacediffError, UsageError
from facediff.files import failure_reason, read_text_bounded
from facediff.raw_scan import csv_path_cell

UTKFACE = "utkface"
UNKNOWN = "unknown"  # the key counting unknown values in "attribute_counts"
NOT_LISTED = "not in the attributes file"
#: A categorical CSV column with more distinct values than this is refused (an id column?).
MAX_VALUES = 256
_FILE_HEADERS = ("file", "filename", "path", "image")
_IGNORED_COLUMNS = ("category",)
#: Attribute names (CLI options, JSON keys) and categorical values (they name sample
#: folders, ``I_female_60-69``): letters, digits and a few safe marks.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_VALUE = re.compile(r"[A-Za-z0-9+.-]{1,32}")


@dataclass(frozen=True)
class AttributeSource:
    """The attribute set and how each image's raw values are read."""

    attributes: AttributeSet
    origin: str  # "utkface" or the CSV path, as recorded in the manifest
    rows: dict[str, dict[str, str]] | None = None  # CSV: rel path → {attribute: cell}
    row_numbers: dict[str, int] = field(default_factory=dict)  # CSV: rel path → row

    def read(self, rel: str, categories: CategoryMap) -> tuple[dict[str, Any], dict[str, str]]:
        """Raw values of the image at ``rel`` and the reason for each unknown one."""
        if self.rows is None:
            return _from_utkface_name(rel.rsplit("/", 1)[-1], categories, self.attributes)
        cells = self.rows.get(rel)
        if cells is None:
            return {}, {a.name: NOT_LISTED for a in self.attributes}
        values: dict[str, Any] = {}
        reasons: dict[str, str] = {}
        for a in self.attributes:
            value, reason = _parse_cell(a, cells.get(a.name, ""))
            if reason is None:
                values[a.name] = value
            else:
                reasons[a.name] = reason
        return values, reasons


def _from_utkface_name(
    name: str, categories: CategoryMap, attributes: AttributeSet
) -> tuple[dict[str, Any], dict[str, str]]:
    values, reasons = parse_utkface(name)
    category = categories.match(name)
    if not values and category is not None:
        # A prefix without a separator (white63_1_0_…) or with digits in it: strip it.
        again = parse_utkface(name[len(category.prefix) :].lstrip("_-"))
        if again[0]:
            values, reasons = again
    keep = set(attributes.names)
    return (
        {k: v for k, v in values.items() if k in keep},
        {k: v for k, v in reasons.items() if k in keep},
    )


def _parse_cell(attribute: Attribute, text: str) -> tuple[Any, str | None]:
    if attribute.numeric or attribute.name == "gender":
        return parse_raw_value(attribute, text)
    t = text.strip()
    if not t:
        return None, "empty"
    if t.casefold() == UNKNOWN:
        return None, f"{attribute.name} marked unknown"
    if not _VALUE.fullmatch(t):
        return None, f"{attribute.name} {t!r} is not a value name (letters, digits, + . -)"
    return t, None  # the values are the column's valid cells: always one of them


def edges_from(text: str | Sequence[int] | None) -> tuple[int, ...]:
    """``--age-edges`` text (``"10,20,30"``) or numbers → the edges; None → decades."""
    if text is None:
        return DEFAULT_AGE_EDGES
    try:
        return parse_age_edges(text if isinstance(text, str) else ",".join(map(str, text)))
    except ValueError as e:
        raise UsageError(f"--age-edges: {e}") from None


def attribute_source(
    spec: str | Path, raw: Path, age_edges: str | Sequence[int] | None = None
) -> AttributeSource:
    """``"utkface"`` (the file-name parser) or a CSV path → an :class:`AttributeSource`.
    A :class:`~pathlib.Path` is always a file (even one named ``utkface``)."""
    edges = edges_from(age_edges)
    if isinstance(spec, str) and spec.strip().lower() == UTKFACE:
        return AttributeSource(AttributeSet((age_attribute(edges), gender_attribute())), UTKFACE)
    return _read_csv(Path(spec), raw, edges, age_edges is not None)


def _read_csv(path: Path, raw: Path, edges: tuple[int, ...], edges_given: bool) -> AttributeSource:
    try:
        # A bounded read of a regular file: a FIFO or /dev/zero is an error, not a hang.
        text = read_text_bounded(path).removeprefix("\ufeff")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except FileNotFoundError:
        raise FacediffError(f"attributes file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise FacediffError(f"cannot read attributes file {path}: {failure_reason(e)}") from None
    numbered = [(n, row) for n, row in enumerate(rows, 1) if any(c.strip() for c in row)]
    if not numbered:
        raise FacediffError(f"attributes file {path} is empty")
    header_number, header = numbered[0]
    names = _columns(path, header_number, header)
    if edges_given and "age" not in names:
        raise UsageError(f"--age-edges: attributes file {path} has no age column")
    cells: dict[str, dict[str, str]] = {}
    row_numbers: dict[str, int] = {}
    for number, row in numbered[1:]:
        if len(row) > len(header):
            raise FacediffError(
                f"attributes file {path}, row {number}: {len(row)} cells, "
                f"but the header names {len(header)} columns"
            )
        rel = _relative(path, number, row[0], raw)
        if not rel:
            raise FacediffError(f"attributes file {path}, row {number}: the file cell is empty")
        values = {
            name: row[j].strip() if j < len(row) else ""
            for j, name in enumerate(names)
            if name is not None
        }
        if rel in cells and cells[rel] != values:
            raise FacediffError(
                f"attributes file {path}, row {number}: {rel} is listed again "
                f"(row {row_numbers[rel]}) with other values"
            )
        cells[rel] = values
        row_numbers.setdefault(rel, number)
    if not cells:
        raise FacediffError(f"attributes file {path} lists no files")
    attributes = []
    for name in names:
        if name is None:
            continue
        if name == "age":
            attributes.append(age_attribute(edges))
        elif name == "gender":
            attributes.append(gender_attribute())
        else:
            attributes.append(_categorical(path, name, [c[name] for c in cells.values()]))
    return AttributeSource(AttributeSet(tuple(attributes)), str(path), cells, row_numbers)


def _columns(path: Path, number: int, header: list[str]) -> list[str | None]:
    """Attribute name per column (None for the file column and ignored ones)."""
    cleaned = [c.strip() for c in header]
    if cleaned[0].lower() not in _FILE_HEADERS:
        raise FacediffError(
            f"attributes file {path}, row {number}: expected a header row "
            f"file,<attribute>,… (e.g. file,age,gender), got {','.join(cleaned)!r}"
        )
    names: list[str | None] = [None]
    seen: set[str] = set()
    for j, cell in enumerate(cleaned[1:], 2):
        key = cell.lower()
        if not cell:
            raise FacediffError(f"attributes file {path}, row {number}: column {j} has no name")
        if key in _IGNORED_COLUMNS:
            names.append(None)
            continue
        name = key if key in ("age", "gender") else cell
        if not _NAME.fullmatch(name):
            raise FacediffError(
                f"attributes file {path}, row {number}: column name {cell!r} must be a "
                "letter, then letters, digits, _ or - (at most 32)"
            )
        if name.casefold() in seen:
            raise FacediffError(f"attributes file {path}: column {cell!r} appears twice")
        seen.add(name.casefold())
        names.append(name)
    if not seen:
        raise FacediffError(
            f"attributes file {path}, row {number}: no attribute columns after the file column"
        )
    return names


def _relative(path: Path, number: int, cell: str, raw: Path) -> str:
    if not cell.strip():
        return ""
    return csv_path_cell(cell, raw, f"attributes file {path}, row {number}")


def _categorical(path: Path, name: str, cells: list[str]) -> Attribute:
    values = sorted({c for c in cells if _VALUE.fullmatch(c) and c.casefold() != UNKNOWN})
    if not values:
        raise FacediffError(
            f"attributes file {path}: column {name!r} has no values "
            "(names of letters, digits, + . -)"
        )
    if len(values) > MAX_VALUES:
        raise FacediffError(
            f"attributes file {path}: column {name!r} has {len(values)} distinct values "
            f"(at most {MAX_VALUES} make an attribute)"
        )
    return Attribute(name, tuple(values))


@dataclass(frozen=True)
class ImageAttributes:
    """The attribute labels of the kept images, in packed order."""

    attributes: AttributeSet
    origin: str
    values: list[dict[str, Any]]  # raw values per image
    unknown: list[dict[str, str]]  # reason per unknown value, per image
    tensor: torch.Tensor  # int64 N×A value indices, -1 unknown
    unused_rows: int = 0  # CSV rows that name no kept image


def label_images(
    source: AttributeSource, rels: Sequence[str], categories: CategoryMap
) -> ImageAttributes:
    """Read every kept image's attributes (``rels``: source paths in packed order)."""
    values, unknown, rows = [], [], []
    for rel in rels:
        v, why = source.read(rel, categories)
        values.append(v)
        unknown.append(why)
        rows.append(
            [-1 if a.name not in v else int(a.index_of_raw(v[a.name])) for a in source.attributes]
        )
    tensor = torch.tensor(rows, dtype=torch.int64).reshape(len(rels), len(source.attributes))
    unused = len(set(source.rows) - set(rels)) if source.rows is not None else 0
    return ImageAttributes(source.attributes, source.origin, values, unknown, tensor, unused)


def attribute_counts(
    labelled: ImageAttributes, labels: Sequence[int], categories: CategoryMap
) -> dict[str, dict[str, dict[str, int]]]:
    """``{category name: {attribute: {value: n, …, "unknown": n}}}``, every value listed."""
    counts = {
        c.name: {a.name: {**dict.fromkeys(a.values, 0), UNKNOWN: 0} for a in labelled.attributes}
        for c in categories
    }
    for label, row in zip(labels, labelled.tensor.tolist()):
        per = counts[categories[label].name]
        for a, index in zip(labelled.attributes, row):
            per[a.name][UNKNOWN if index < 0 else a.values[index]] += 1
    return counts


def unknown_reasons(labelled: ImageAttributes) -> dict[str, dict[str, int]]:
    """``{attribute: {reason: n}}`` over all kept images (for the CLI's summary)."""
    out: dict[str, dict[str, int]] = {a.name: {} for a in labelled.attributes}
    for why in labelled.unknown:
        for name, reason in why.items():
            out[name][reason] = out[name].get(reason, 0) + 1
    return {name: dict(sorted(r.items())) for name, r in out.items()}


__all__ = [
    "UTKFACE",
    "AttributeSource",
    "ImageAttributes",
    "attribute_counts",
    "attribute_source",
    "edges_from",
    "label_images",
    "unknown_reasons",
]
