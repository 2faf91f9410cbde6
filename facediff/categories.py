"""Categories: which file-name prefix maps to which named, one-letter-coded class.

The label index of a category is its position in the :class:`CategoryMap`; the null
class used for classifier-free guidance is index ``len(categories)``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from facediff.errors import ConfigError, FacediffError, UsageError
from facediff.files import failure_reason, read_text_bounded

_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
_CODE_RE = re.compile(r"^[A-Z]$")


@dataclass(frozen=True)
class Category:
    """A class of images: files whose name starts with ``prefix`` belong to it."""

    prefix: str  # lower-case, matched case-insensitively
    name: str  # folder-safe display name, e.g. "Oriental"
    code: str  # one upper-case letter, e.g. "O"

    def to_dict(self) -> dict[str, str]:
        return {"prefix": self.prefix, "name": self.name, "code": self.code}


def make_category(prefix: str, name: str, code: str) -> Category:
    """Build a validated :class:`Category` (prefix lower-cased, code upper-cased)."""
    for what, value in (("prefix", prefix), ("name", name), ("code", code)):
        if not isinstance(value, str):
            raise UsageError(f"invalid category {what} {value!r}: it must be a string")
    prefix = prefix.strip().lower()
    name = name.strip()
    code = code.strip().upper()
    if not _PREFIX_RE.match(prefix):
        raise UsageError(f"invalid category prefix {prefix!r}: use letters, digits, '-' or '_'")
    if not _NAME_RE.match(name) or name in {".", ".."}:
        raise UsageError(
            f"invalid category name {name!r}: use letters, digits, spaces, '.', '-' or '_' "
            "(it becomes a folder name)"
        )
    if not _CODE_RE.match(code):
        raise UsageError(f"invalid category code {code!r}: use a single letter A-Z")
    return Category(prefix=prefix, name=name, code=code)


@dataclass(frozen=True)
class CategoryMap:
    """An ordered set of categories with unique prefixes, names and codes."""

    categories: tuple[Category, ...]

    def __post_init__(self) -> None:
        if not self.categories:
            raise UsageError("at least one category is needed")
        for attr in ("prefix", "code"):
            seen: set[str] = set()
            for c in self.categories:
                key = getattr(c, attr)
                if key in seen:
                    raise UsageError(f"duplicate category {attr} {key!r}")
                seen.add(key)
        names = [c.name.lower() for c in self.categories]
        if len(set(names)) != len(names):
            raise UsageError("duplicate category name (names are compared ignoring case)")

    def __len__(self) -> int:
        return len(self.categories)

    def __iter__(self):
        return iter(self.categories)

    def __getitem__(self, index: int) -> Category:
        return self.categories[index]

    @property
    def codes(self) -> str:
        return "".join(c.code for c in self.categories)

    @property
    def null_label(self) -> int:
        """Label index of the null (unconditional) class."""
        return len(self.categories)

    def index(self, key: str) -> int:
        """Label index of a category given by code or name (case-insensitive)."""
        k = key.strip()
        for i, c in enumerate(self.categories):
            if c.code == k.upper() and len(k) == 1:
                return i
        for i, c in enumerate(self.categories):
            if c.name.lower() == k.lower():
                return i
        valid = ", ".join(f"{c.code} ({c.name})" for c in self.categories)
        raise UsageError(f"unknown category {key!r}; valid: {valid}")

    def match(self, filename: str) -> Category | None:
        """The category whose prefix starts ``filename`` (longest prefix first).

        Matching ignores case; a separator after the prefix is optional
        (``indian_001``, ``indian001`` and ``Indian-001`` all match ``indian``).
        """
        lower = filename.lower()
        for c in sorted(self.categories, key=lambda c: len(c.prefix), reverse=True):
            if lower.startswith(c.prefix):
                return c
        return None

    def to_list(self) -> list[dict[str, str]]:
        return [c.to_dict() for c in self.categories]

    @classmethod
    def from_list(cls, items: list[dict[str, str]]) -> CategoryMap:
        if not isinstance(items, list) or not all(isinstance(d, dict) for d in items):
            raise FacediffError(
                "categories must be a list of objects with 'prefix', 'name' and 'code'"
            )
        try:
            return cls(tuple(make_category(d["prefix"], d["name"], d["code"]) for d in items))
        except (KeyError, TypeError) as e:
            raise FacediffError(
                "categories must be a list of objects with 'prefix', 'name' and 'code'"
            ) from e


DEFAULT_CATEGORIES = CategoryMap(
    (
        Category(prefix="indian", name="Indian", code="I"),
        Category(prefix="asian", name="Oriental", code="O"),
        Category(prefix="white", name="European", code="E"),
    )
)


def untrained_consequence(code: str) -> str:
    """What a category without training images means, as `prepare` and `train` warn it."""
    return (
        f"the model will not learn it, and {code} samples and mixes with {code} would come "
        "from an untrained label"
    )


def parse_category_option(text: str) -> Category:
    """Parse one ``PREFIX=NAME:CODE`` option value (``asian=Oriental:O``)."""
    prefix, eq, rest = text.partition("=")
    name, colon, code = rest.rpartition(":")
    if not eq or not colon or not prefix or not name or not code:
        raise UsageError(
            f"invalid --category {text!r}: expected PREFIX=NAME:CODE, e.g. asian=Oriental:O"
        )
    return make_category(prefix, name, code)


def load_categories_file(path: Path) -> CategoryMap:
    """Read categories from a JSON file: a list, or ``{"categories": [...]}``."""
    try:
        # a byte-order mark (Notepad's UTF-8) is not content, as in the attributes CSV
        data = json.loads(read_text_bounded(Path(path)).removeprefix("\ufeff"))
    except FileNotFoundError:
        raise FacediffError(f"categories file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FacediffError(f"cannot read categories file {path}: {failure_reason(e)}") from None
    if isinstance(data, dict):
        data = data.get("categories")
    if not isinstance(data, list):
        raise FacediffError(f"categories file {path}: expected a list of categories")
    try:
        return CategoryMap.from_list(data)
    except FacediffError as e:
        raise type(e)(f"categories file {path}: {e}") from None


def resolve_categories(options: list[str] | None = None, file: Path | None = None) -> CategoryMap:
    """Categories from repeated ``--category`` values or a JSON file (default map if neither)."""
    if options and file:
        raise ConfigError("use either {} or {}, not both", "category", "categories_file")
    if file:
        return load_categories_file(file)
    if options:
        return CategoryMap(tuple(parse_category_option(o) for o in options))
    return DEFAULT_CATEGORIES
