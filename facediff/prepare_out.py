"""The prepared dataset's output folder: what ``prepare --force`` may delete.

Only the files a previous prepare's manifest lists are deleted, and only after checking
that nothing else would be touched: a user's folder named like a new category, a foreign
file, a symbolic link or an unreadable manifest stops it before anything is removed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from facediff.categories import CategoryMap
from facediff.config import HELDOUT_FILE, MANIFEST_FILE, PACKED_FILE
from facediff.errors import FacediffError
from facediff.files import TMP_SUFFIX, read_text_bounded

_OUTPUT_FILE_RE = re.compile(r"^[^/\\]+/[^/\\]+\.png$")
#: The dataset's own files beside its category folders, and their names mid-write.
DATASET_FILES = tuple(
    name + end for name in (MANIFEST_FILE, PACKED_FILE, HELDOUT_FILE) for end in ("", TMP_SUFFIX)
)


def _previous_dataset(out: Path) -> tuple[set[str], set[str]]:
    """(category folder names, ``<Category>/<file>.png`` paths) a previous prepare wrote,
    as its manifest lists them; anything else in ``out`` is not ours to delete."""
    path = out / MANIFEST_FILE
    why = None
    try:
        manifest = json.loads(read_text_bounded(path))
        names = {c.name for c in CategoryMap.from_list(manifest["categories"])}
        held = manifest.get("holdout") or {"images": []}  # prepare --holdout
        files = {entry["file"] for entry in [*manifest["images"], *held["images"]]}
    except (OSError, UnicodeDecodeError, ValueError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
    except (KeyError, TypeError, AttributeError, FacediffError):
        why = "it does not list the dataset's categories and images"
    else:
        for f in files:
            if (
                not isinstance(f, str)
                or not _OUTPUT_FILE_RE.match(f)
                or f.split("/")[0] not in names
            ):
                why = f"it lists {f!r}, which is not a file prepare writes"
                break
    if why is not None:
        raise FacediffError(
            f"cannot tell what the previous prepare wrote in --out {out}: {path} is unreadable "
            f"({why}); nothing was deleted (delete the folder yourself or choose another --out)"
        )
    return names, files


def _check_folder(out: Path, name: str, ours: set[str], new: bool) -> None:
    """Refuse a category folder that is a link, or a new one holding files not ours."""
    folder = out / name
    if folder.is_symlink():
        raise FacediffError(
            f"--out {out}: {folder} is a symbolic link; prepare never writes or deletes "
            "through links (remove the link or choose another --out)"
        )
    if not folder.exists():
        return
    if not folder.is_dir():
        if new:
            raise FacediffError(f"--out {out}: {folder} exists and is not a folder")
        return
    if new:
        for entry in sorted(os.listdir(folder)):
            if f"{name}/{entry}" not in ours or not (folder / entry).is_file():
                raise FacediffError(
                    f"--out {out}: {folder / entry} was not written by the previous prepare; "
                    "nothing was deleted (move it or choose another --out)"
                )


def clear_out(out: Path, categories: CategoryMap, force: bool) -> None:
    """Make ``out`` an empty place for the dataset: only the files the previous prepare's
    manifest lists are deleted, and only after checking nothing else would be touched."""
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    if not force:
        raise FacediffError(
            f"--out {out} is not empty; pass --force to replace a dataset prepared there"
        )
    if not (out / MANIFEST_FILE).is_file():
        raise FacediffError(
            f"--out {out} is not empty and holds no {MANIFEST_FILE}: refusing to overwrite "
            "a folder that is not a facediff dataset, even with --force (delete it yourself "
            "or choose another --out)"
        )
    old_names, ours = _previous_dataset(out)
    new_names = {c.name for c in categories}
    for name in sorted(old_names | new_names):
        _check_folder(out, name, ours, name in new_names)
    for leftover in DATASET_FILES:
        if (out / leftover).is_dir() and not (out / leftover).is_symlink():
            raise FacediffError(f"--out {out}: {out / leftover} is a folder; remove it first")
    (out / MANIFEST_FILE).unlink()  # first: no manifest may describe a half-replaced set
    for rel in sorted(ours):
        path = out / rel
        if path.is_symlink() or path.is_file():  # a link itself is removed, never its target
            path.unlink()
    for name in sorted(old_names):
        folder = out / name
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    for leftover in DATASET_FILES:
        (out / leftover).unlink(missing_ok=True)


def remove_empty_folders(out: Path, categories: CategoryMap) -> None:
    """Remove the category folders left empty when no image could be kept."""
    for c in categories:
        folder = out / c.name
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
