"""Reading a raw folder: which files are images of which category, which are byte-for-byte
duplicates, and the stem each kept file is written under (see :mod:`facediff.preparation`).

Three layouts say which category a photo belongs to:

- *prefixes*: the file name starts with a category prefix (``indian_001.jpg``);
- *folders*: a top-level folder named after a category's prefix or name, any case
  (``raw/indian/001.jpg``, ``raw/Oriental/x.png``: torchvision's ImageFolder layout);
  files outside such folders fall back to their prefix;
- *labels file*: ``--labels FILE.csv`` with rows ``file,category`` (paths relative to the
  raw folder; the category as prefix, name or code; an optional header row).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from facediff.categories import CategoryMap
from facediff.errors import FacediffError
from facediff.files import failure_reason, read_text_bounded
from facediff.imaging import IMAGE_EXTENSIONS, ImageSkip, sha256_regular

NOT_IMAGE_FILE = "not an image file"
UNKNOWN_PREFIX = "unknown prefix"
UNKNOWN_FOLDER = "unknown category folder"
NOT_LABELLED = "not in the labels file"
UNKNOWN_LABEL = "unknown category"
LISTED_MISSING = "listed in the labels file but not found"
DUPLICATE = "duplicate"
#: Layout names (PrepareReport.layout, manifest "layout").
PREFIXES, FOLDERS, FOLDERS_AND_PREFIXES, LABELS_FILE = (
    "prefixes",
    "folders",
    "folders and prefixes",
    "labels file",
)


@dataclass(frozen=True)
class Source:
    """A raw file that looks like an image of a known category."""

    path: Path
    rel: str  # POSIX path relative to RAW
    label: int
    stem: str


@dataclass(frozen=True)
class Skipped:
    source: str  # POSIX path relative to RAW
    reason: str  # as recorded in the manifest, e.g. "duplicate of a/b.jpg"
    kind: str  # the reason without its detail, for counting ("duplicate")
    label: int | None = None  # the category, when the name matched one


def image_stem(name: str) -> str | None:
    """The name up to its first image extension, or None if it does not end in one."""
    parts = name.split(".")
    if len(parts) < 2 or f".{parts[-1].lower()}" not in IMAGE_EXTENSIONS:
        return None
    for i in range(1, len(parts)):
        if f".{parts[i].lower()}" in IMAGE_EXTENSIONS:
            return ".".join(parts[:i])
    return None  # unreachable: the last part is an image extension


def _category_named(text: str, categories: CategoryMap) -> int | None:
    """The category whose prefix, name or one-letter code is ``text`` (any case)."""
    key = text.strip().casefold()
    for i, c in enumerate(categories):
        if key in (c.prefix.casefold(), c.name.casefold(), c.code.casefold()):
            return i
    return None


def category_folders(raw: Path, categories: CategoryMap) -> dict[str, int]:
    """Top-level folders of ``raw`` named after a category's prefix or name (any case)."""
    folders = {}
    for entry in sorted(raw.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            key = entry.name.casefold()
            for i, c in enumerate(categories):
                if key in (c.prefix.casefold(), c.name.casefold()):
                    folders[entry.name] = i
    return folders


def csv_path_cell(cell: str, raw: Path, where: str) -> str:
    """A CSV cell naming a photo → its path relative to ``raw`` (POSIX, no ``./``):
    backslashes read as slashes, absolute paths must lie inside ``raw``; ``where`` (the
    file and row) starts the error message. Shared by ``--labels`` and ``--attributes``."""
    name = cell.strip().replace("\\", "/")
    if Path(name).is_absolute():
        try:
            name = Path(name).resolve().relative_to(raw).as_posix()
        except ValueError:
            raise FacediffError(f"{where}: {name} is not inside {raw}") from None
    return Path(name).as_posix().removeprefix("./")


def read_labels(path: Path, raw: Path, categories: CategoryMap) -> dict[str, int | str]:
    """``file,category`` rows → {path relative to raw: label, or the unknown category's name}."""
    try:
        # A bounded read of a regular file: a FIFO or /dev/zero is an error, not a hang.
        text = read_text_bounded(Path(path)).removeprefix("\ufeff")
        lines = io.StringIO(text, newline="")
        rows = [row for row in csv.reader(lines) if row and any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise FacediffError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise FacediffError(f"cannot read labels file {path}: {failure_reason(e)}") from None
    if rows and rows[0][0].strip().lower() in ("file", "filename", "path", "image"):
        rows = rows[1:]  # a header row
    labels: dict[str, int | str] = {}
    for number, row in enumerate(rows, 1):
        if len(row) < 2:
            raise FacediffError(f"labels file {path}, row {number}: expected file,category")
        rel = csv_path_cell(row[0], raw, f"labels file {path}, row {number}")
        label = _category_named(row[1], categories)
        value: int | str = label if label is not None else row[1].strip()
        if labels.get(rel, value) != value:
            raise FacediffError(f"labels file {path}: {rel} is listed with two categories")
        labels[rel] = value
    if not labels:
        raise FacediffError(f"labels file {path} lists no files")
    return labels


def scan_raw(
    raw: Path, categories: CategoryMap, labels: dict[str, int | str] | None = None
) -> tuple[list[Source], list[Skipped], str]:
    """All files under ``raw`` in sorted path order: image candidates, early skips and the
    layout found (see the module docstring)."""
    rels = []
    for dirpath, _dirnames, filenames in os.walk(raw):
        for name in filenames:
            rels.append((Path(dirpath) / name).relative_to(raw).as_posix())
    folders = category_folders(raw, categories) if labels is None else {}
    listed = dict(labels or {})
    sources: list[Source] = []
    skipped: list[Skipped] = []
    used: set[str] = set()
    for rel in sorted(rels):
        name = rel.rsplit("/", 1)[-1]
        stem = image_stem(name)
        hidden = any(part.startswith(".") for part in rel.split("/"))
        if stem is None or hidden:
            listed.pop(rel, None)
            skipped.append(Skipped(rel, NOT_IMAGE_FILE, NOT_IMAGE_FILE))
            continue
        label, reason = _label_of(rel, name, categories, folders, listed, labels is not None)
        if label is None:
            skipped.append(Skipped(rel, reason, reason.split(" (", 1)[0]))
            continue
        used.add(reason)
        sources.append(Source(raw / rel, rel, label, stem))
    for rel in sorted(listed):
        skipped.append(Skipped(rel, LISTED_MISSING, LISTED_MISSING))
    if labels is not None:
        layout = LABELS_FILE
    elif used == {FOLDERS}:
        layout = FOLDERS
    elif used == {FOLDERS, PREFIXES}:
        layout = FOLDERS_AND_PREFIXES
    else:
        layout = PREFIXES
    return sources, skipped, layout


def _label_of(
    rel: str,
    name: str,
    categories: CategoryMap,
    folders: dict[str, int],
    listed: dict[str, int | str],
    labelled: bool,
) -> tuple[int | None, str]:
    """(label, how it was found) or (None, skip reason) for one image file."""
    if labelled:
        if rel not in listed:
            return None, NOT_LABELLED
        value = listed.pop(rel)
        if isinstance(value, str):
            return None, f"{UNKNOWN_LABEL} ({value!r} in the labels file)"
        return value, LABELS_FILE
    top = rel.split("/", 1)[0] if "/" in rel else None
    if top in folders:
        return folders[top], FOLDERS
    category = categories.match(name)
    if category is not None:
        return categories.categories.index(category), PREFIXES
    if folders and top is not None:
        return None, f"{UNKNOWN_FOLDER} ({top!r})"
    return None, UNKNOWN_PREFIX


def dedupe(sources: list[Source]) -> tuple[list[tuple[Source, str]], list[Skipped]]:
    """Hash every source; keep the first of identical contents (sources are sorted)."""
    first: dict[str, str] = {}
    kept: list[tuple[Source, str]] = []
    skipped: list[Skipped] = []
    for s in sources:
        try:  # regular files only (a FIFO or /dev/zero would block or never end), bounded
            digest = sha256_regular(s.path)
        except ImageSkip as skip:
            skipped.append(Skipped(s.rel, skip.reason, skip.kind, s.label))
            continue
        if digest in first:
            skipped.append(Skipped(s.rel, f"duplicate of {first[digest]}", DUPLICATE, s.label))
            continue
        first[digest] = s.rel
        kept.append((s, digest))
    return kept, skipped


def assign_stems(sources: list[Source]) -> list[str]:
    """Unique output stems per category folder (rule in the module docstring)."""
    reserved = {(s.label, s.stem.casefold()) for s in sources}
    used: set[tuple[int, str]] = set()
    stems = []
    for s in sources:
        stem, n = s.stem, 1
        while (s.label, stem.casefold()) in used or (
            n > 1 and (s.label, stem.casefold()) in reserved
        ):
            n += 1
            stem = f"{s.stem}_{n}"
        used.add((s.label, stem.casefold()))
        stems.append(stem)
    return stems
