"""Reading a raw folder: which files are images of which category, which are byte-for-byte
duplicates, and the stem each kept file is written under (see :mod:`facediff.preparation`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facediff.categories import CategoryMap
from facediff.dataset import sha256_file
from facediff.imaging import IMAGE_EXTENSIONS

NOT_IMAGE_FILE = "not an image file"
UNKNOWN_PREFIX = "unknown prefix"
DUPLICATE = "duplicate"


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


def scan_raw(raw: Path, categories: CategoryMap) -> tuple[list[Source], list[Skipped]]:
    """All files under ``raw`` in sorted path order: image candidates and early skips."""
    rels = []
    for dirpath, _dirnames, filenames in os.walk(raw):
        for name in filenames:
            rels.append((Path(dirpath) / name).relative_to(raw).as_posix())
    sources: list[Source] = []
    skipped: list[Skipped] = []
    for rel in sorted(rels):
        name = rel.rsplit("/", 1)[-1]
        stem = image_stem(name)
        hidden = any(part.startswith(".") for part in rel.split("/"))
        if stem is None or hidden:
            skipped.append(Skipped(rel, NOT_IMAGE_FILE, NOT_IMAGE_FILE))
            continue
        category = categories.match(name)
        if category is None:
            skipped.append(Skipped(rel, UNKNOWN_PREFIX, UNKNOWN_PREFIX))
            continue
        label = categories.categories.index(category)
        sources.append(Source(raw / rel, rel, label, stem))
    return sources, skipped


def dedupe(sources: list[Source]) -> tuple[list[tuple[Source, str]], list[Skipped]]:
    """Hash every source; keep the first of identical contents (sources are sorted)."""
    first: dict[str, str] = {}
    kept: list[tuple[Source, str]] = []
    skipped: list[Skipped] = []
    for s in sources:
        try:
            digest = sha256_file(s.path)
        except OSError as e:
            reason = f"unreadable ({e.strerror or type(e).__name__})"
            skipped.append(Skipped(s.rel, reason, "unreadable", s.label))
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
