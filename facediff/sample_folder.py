"""The sample folder: ``sample`` writes it (PNGs per category and mix, and a JSON
record); ``grid`` and ``evaluate`` read it back through the functions here.

Layout (one folder per label, one file per seed)::

    <out>/<LABEL>/<LABEL>_<seed>.png     e.g. generated_images/OIE/OIE_3.png
    <out>/samples.json                   what was generated, how, and from which model

``LABEL`` is the mix label (``I``, ``OI``, ``O70I30``…), followed, when attributes were
requested, by the requested values in the model's attribute order (``I_female_60-69``,
``OIE_male``, ``I_90+``): requests for different attributes never share a folder, and
a request for none writes the folders of before. Seeds run from ``seed`` to
``seed + n - 1``; the image for a seed is the same whatever ``n`` or the batch size
(see :mod:`facediff.generation`). Existing images are never overwritten unless ``force``.

Each ``samples.json`` entry lists its labels with their mix weights (``"mixes"``) and the
requested attributes (``"attributes": {"gender": "female", "age": "60-69"}``, requested
ones only; ``"attribute_guidance"`` when some had their own scale; ``"guidance_interval"``
when guidance ran on part of the steps only).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from facediff import folder_lock
from facediff.attribute_request import AttributeRequest, resolve_request
from facediff.categories import CategoryMap
from facediff.config import SampleConfig
from facediff.device import resolve_device, resolve_precision
from facediff.errors import FacediffError
from facediff.files import read_text_bounded, save_image_atomic, write_json_atomic
from facediff.imaging import ImageSkip, load_png_rgb, tensor_to_image
from facediff.loading import LoadedModel, load_for_inference
from facediff.mix import Mix, parse_mix, resolve_mixes
from facediff.progress import Progress, ProgressCallback, emit

RECORD_FILE = "samples.json"
#: How long appending to the record waits for another sample appending to it.
RECORD_WAIT_S = 60.0


@dataclass
class SampleResult:
    out: Path
    record_path: Path
    files: dict[str, list[Path]] = field(default_factory=dict)  # by label
    seconds: float = 0.0
    attributes: dict[str, str] = field(default_factory=dict)  # requested (canonical values)

    @property
    def images(self) -> int:
        return sum(len(v) for v in self.files.values())


def image_path(out: Path, label: str, seed: int) -> Path:
    return Path(out) / label / f"{label}_{seed}.png"


#: A sample image is read back only if it has at most this many pixels (a sample is a
#: few hundred pixels square; a decompression bomb dropped in the folder is refused).
MAX_SAMPLE_PIXELS = 4096 * 4096


def read_sample_png(path: Path) -> Image.Image:
    """A sample PNG as RGB, read like ``prepare`` reads photos: a regular file of bounded
    size, the PNG decoder only, the pixel count checked before decoding."""
    try:
        return load_png_rgb(Path(path), MAX_SAMPLE_PIXELS)
    except ImageSkip as skip:
        raise FacediffError(f"cannot read sample image {path}: {skip.reason}") from None


def save_png(image: torch.Tensor, path: Path) -> None:
    """Write one uint8 3×H×W image as PNG, beside it and then renamed into place: never a
    half-written PNG, and an existing link is replaced, never written through."""
    save_image_atomic(tensor_to_image(image), path)


def read_record(folder: Path) -> list[Any]:
    """The entries of ``<folder>/samples.json``, oldest first; [] when it is missing or
    unreadable (a record is a convenience, never fatal to reading a folder)."""
    return _entries(folder) or []


def _entries(folder: Path) -> list[Any] | None:
    """The record's entries; [] when there is no record, None when it is unreadable."""
    path = Path(folder) / RECORD_FILE
    if not path.exists() and not path.is_symlink():
        return []
    try:
        entries = json.loads(read_text_bounded(path)).get("entries", [])
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return entries if isinstance(entries, list) else None


def recorded_weights(folder: Path) -> dict[str, Any]:
    """Each mix label the record lists (first-sampled first) with its newest weights."""
    found: dict[str, Any] = {}
    for entry in read_record(folder):
        mixes = entry.get("mixes") if isinstance(entry, dict) else None
        for label, weights in (mixes if isinstance(mixes, dict) else {}).items():
            found[label] = weights
    return found


def recorded_labels(folder: Path) -> list[str]:
    """The mix labels the record lists, in the order they were first sampled."""
    return list(recorded_weights(folder))


#: A label: the mix label, then an optional ``_<value>`` per requested attribute.
_LABEL_RE = re.compile(r"[A-Za-z0-9]{1,64}(_[A-Za-z0-9+.-]{1,32}){0,8}")


def recorded_mixes(folder: Path, categories: CategoryMap) -> dict[str, Mix]:
    """The mixes the record lists, by label (those that parse with ``categories``).
    A label is a name, never a path: one that is not a mix label (letters and digits),
    optionally followed by ``_<attribute value>`` parts, is refused."""
    found: dict[str, Mix] = {}
    for label, weights in recorded_weights(folder).items():
        if not isinstance(label, str) or not _LABEL_RE.fullmatch(label):
            raise FacediffError(
                f"{Path(folder) / RECORD_FILE} lists the mix label {label!r}, which is not a "
                "mix label (letters and digits, then optional _<attribute value> parts)"
            )
        try:
            spec = ",".join(f"{code}:{w}" for code, w in weights.items())
            m = parse_mix(spec, categories)
        except (FacediffError, AttributeError):
            continue
        found[label] = Mix(label, m.indices, m.weights)
    return found


def seed_files(folder: Path, label: str) -> list[tuple[int, Path]]:
    """``(seed, path)`` of ``<folder>/<label>/<label>_<seed>.png`` in seed order
    (``OI_2`` before ``OI_10``)."""
    sub = Path(folder) / label
    pattern = re.compile(rf"{re.escape(label)}_(-?\d+)\.png")
    found = []
    for p in sub.glob(f"{label}_*.png") if sub.is_dir() else ():
        m = pattern.fullmatch(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


@dataclass
class ReadImages:
    """What :func:`read_images` read from one label's folder."""

    images: torch.Tensor  # uint8 N×3×S×S
    resized_from: list[str]  # the sizes resized from (["64x64"]; empty when none was)
    seeds: list[int]  # the seeds of the seeded images read, in order (they come first)
    unseeded: int = 0  # other PNGs read after them


def read_images(folder: Path, label: str, size: int, limit: int) -> ReadImages:
    """Up to ``limit`` images of ``label`` as uint8 N×3×size×size, in seed order (other
    PNGs in the label's folder after them, by name), resized when they differ in size."""
    seeded = seed_files(folder, label)
    sub = Path(folder) / label
    paths = {p for _, p in seeded}
    others = sorted(p for p in sub.iterdir() if p.suffix.lower() == ".png" and p not in paths)
    chosen = [*(p for _, p in seeded), *others][:limit]
    arrays, resized = [], set()
    for p in chosen:
        im = read_sample_png(p)
        if im.size != (size, size):
            resized.add(im.size)
            im = im.resize((size, size), Image.LANCZOS)
        arrays.append(np.asarray(im, dtype=np.uint8))
    seeds = [s for s, _ in seeded[:limit]]
    read = ReadImages(
        torch.empty((0, 3, size, size), dtype=torch.uint8),
        [f"{w}x{h}" for w, h in sorted(resized)],
        seeds,
        len(chosen) - len(seeds),
    )
    if arrays:
        read.images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return read


#: Entry fields that say which images an entry wrote, not what drew them and how.
_NOT_ORIGIN = ("seeds", "mixes", "attributes", "seconds")


def origin_of(entry: Mapping[str, Any], label: str) -> dict[str, Any]:
    """What drew an entry's images of ``label``: model, step, weights, size, sampling
    settings and the label's ``mix`` weights (``O:1,I:2`` and ``O:0.334,I:0.666`` share
    the label ``O33I67``)."""
    mixes = entry.get("mixes")
    mix = mixes.get(label) if isinstance(mixes, dict) else None
    return {k: v for k, v in entry.items() if k not in _NOT_ORIGIN} | {"mix": mix}


def image_origins(
    record: list[Any], label: str, seeds: list[int]
) -> list[tuple[dict[str, Any] | None, list[int]]]:
    """What drew the images of ``label`` for ``seeds``, by the ``record``'s entries
    (:func:`read_record`, read once by the caller): each distinct origin (:func:`origin_of`
    the newest entry that wrote the seed), first found first, with its seeds; ``None`` for
    seeds no entry lists."""
    entries = [e for e in record if isinstance(e, dict)]
    owner: dict[int, int] = {}
    for i, entry in enumerate(entries):
        mixes, written = entry.get("mixes"), entry.get("seeds")
        if isinstance(mixes, dict) and label in mixes and isinstance(written, list):
            owner.update((s, i) for s in written if isinstance(s, int))
    found: dict[str, tuple[dict[str, Any] | None, list[int]]] = {}
    for s in seeds:
        i = owner.get(s)
        origin = origin_of(entries[i], label) if i is not None else None
        found.setdefault(json.dumps(origin, sort_keys=True), (origin, []))[1].append(s)
    return list(found.values())


def origin_differences(origins: list[Mapping[str, Any]]) -> list[str]:
    """How origins differ, by field: ``"2 models"``, ``"step 20 / 40"`` (no path: these
    words travel into reports and model cards)."""
    parts = []
    for key in dict.fromkeys(k for o in origins for k in o if k != "images"):
        values = list(dict.fromkeys(_value(o, key) for o in origins))
        if len(values) > 1:
            parts.append(
                f"{len(values)} models" if key == "model" else f"{key} {' / '.join(values)}"
            )
    return parts


def mixed_origins(record: list[Any], label: str, seeds: list[int]) -> str | None:
    """``"drawn 2 different ways (step 20 / 40)"`` when the ``record`` says the images of
    ``label`` for ``seeds`` were not all drawn alike; None when they were (or none is
    recorded)."""
    found = image_origins(record, label, seeds)
    recorded = [o for o, _ in found if o is not None]
    if len(found) < 2 or not recorded:
        return None
    return ways_drawn(recorded, sum(len(s) for o, s in found if o is None))


def ways_drawn(recorded: list[Mapping[str, Any]], unlisted: int) -> str:
    """``"drawn 3 different ways (2 models; step 20 / 40; 5 images samples.json does not
    list)"``: distinct recorded origins, and ``unlisted`` images of none."""
    parts = origin_differences(recorded)
    if unlisted:
        parts.append(f"{unlisted} images samples.json does not list")
    return f"drawn {len(recorded) + bool(unlisted)} different ways ({'; '.join(parts)})"


def _value(origin: Mapping[str, Any], key: str) -> str:
    v = origin.get(key, "none")
    return v if isinstance(v, str) else json.dumps(v)


def _shown(origin: Mapping[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k} {_value(origin, k)}" for k in keys)


def _mixed_in(out: Path, labels: list[str], seeds: list[int], entry: dict[str, Any]) -> list[str]:
    """A warning per label folder that already holds images drawn otherwise than this
    ``entry`` draws (another model, step, size or setting, by the record): grid and
    evaluate read a label's images together."""
    entry = json.loads(json.dumps(entry))  # as the record will hold it
    redrawn = set(seeds)  # under --force these are replaced, not kept beside
    record = read_record(out)
    warnings = []
    for label in labels:
        here = origin_of(entry, label)
        kept = [s for s, _ in seed_files(out, label) if s not in redrawn]
        others, differ = [], []
        for origin, found in image_origins(record, label, kept):
            if origin is not None and origin != here:
                keys = [k for k in dict.fromkeys([*origin, *here]) if origin.get(k) != here.get(k)]
                others.append(f"{len(found)} with {_shown(origin, keys)}")
                differ += [k for k in keys if k not in differ]
        if others:
            warnings.append(
                f"warning: {out / label} already holds images drawn otherwise than these "
                f"({_shown(here, [k for k in here if k in differ])}): {'; '.join(others)}. "
                "grid and evaluate read a label folder's images together; sample into "
                "another --out to keep them apart"
            )
    return warnings


def _check_free(out: Path, labels: list[str], seeds: list[int], force: bool) -> None:
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():  # before the model does any work
        raise FacediffError(f"--out {out}: {existing} is a file, not a folder")
    if force:
        return
    if _entries(out) is None:  # appending would replace it, and the records in it
        raise FacediffError(
            f"{out / RECORD_FILE} is not a readable samples record; move it away, or use "
            "--force to replace it"
        )
    for label in labels:
        for s in seeds:
            p = image_path(out, label, s)
            if p.exists():
                raise FacediffError(f"{p} already exists; use --force to overwrite")


def _record_entry(
    loaded: LoadedModel,
    config: SampleConfig,
    mixes: list[Mix],
    seeds: list[int],
    seconds: float,
    request: AttributeRequest,
) -> dict[str, Any]:
    entry = {
        "model": os.path.abspath(loaded.source),  # where it is, from any working folder
        "step": loaded.step,
        "weights": loaded.weights,
        "sampler": config.sampler,
        "steps": config.steps,
        "guidance": config.guidance,
        "mix_mode": config.mix_mode,
        "size": loaded.model_config.sample_size,
        "seeds": seeds,
        "mixes": {request.label(m.label): m.to_dict(loaded.categories)["weights"] for m in mixes},
        "attributes": dict(request.values),
        "seconds": round(seconds, 3),
    }
    if request.guidance:
        entry["attribute_guidance"] = request.guidance
    return entry | config.recorded_extras()


def write_record(out: Path, entry: dict[str, Any]) -> Path:
    """Append ``entry`` to ``<out>/samples.json`` (``{"entries": [...]}``, newest last)."""
    path = Path(out) / RECORD_FILE
    # held while read, appended and written: a sample of other mixes into this folder
    # appends its entry before or after, never in between
    with folder_lock.writing(Path(out), wait_s=RECORD_WAIT_S):
        entries = read_record(out)  # an unreadable one is replaced: sample refused it unforced
        write_json_atomic(path, {"entries": [*entries, entry]})
    return path


def sample(
    run: Path,
    out: Path,
    config: SampleConfig,
    *,
    mixes: list[str] | None = None,
    categories: list[str] | None = None,
    attributes: Mapping[str, str | None] | None = None,
    attribute_guidance: Mapping[str, float] | None = None,
    checkpoint_step: int | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> SampleResult:
    """Generate ``config.n`` images for every requested category and mix into ``out``,
    with the requested ``attributes`` (see :func:`facediff.generation.generate`)."""
    from facediff.generation import generate_each_batch, prepare_for  # diffusers is heavy

    device = resolve_device(config.device)  # load straight onto it, in the sampling dtype
    dtype = resolve_precision(config.precision, device)
    loaded = load_for_inference(
        Path(run), step=checkpoint_step, use_ema=config.use_ema, device=device, dtype=dtype
    )
    plan = resolve_mixes(loaded.categories, mixes, categories)
    request = resolve_request(loaded.attributes, attributes, attribute_guidance)
    seeds = list(range(config.seed, config.seed + config.n))
    out = Path(out)
    labels = [request.label(m.label) for m in plan]
    with folder_lock.writing(out, wait_s=RECORD_WAIT_S):
        pass  # a command writing --out itself (a run training there) refuses now, not after
    with contextlib.ExitStack() as held:  # one writer per mix folder; other mixes may run
        for label in labels:
            held.enter_context(folder_lock.writing(out / label))
        _check_free(out, labels, seeds, force)
        mixed = _mixed_in(
            out, labels, seeds, _record_entry(loaded, config, plan, seeds, 0, request)
        )
        total = len(plan) * len(seeds)
        den = prepare_for(loaded, config, [(mix, request, config.n) for mix in plan], device=device)
        result = SampleResult(
            out=out, record_path=out / RECORD_FILE, attributes=dict(request.values)
        )
        for warning in [*loaded.notes(plan), *mixed, *den.warnings]:
            emit(progress, Progress("sample", 0, total, message=warning))
        emit(progress, Progress("sample", 0, total))
        start = time.perf_counter()
        # Each batch's PNGs are written as soon as it is done: the first image appears after
        # one batch, and an interrupted run keeps every finished batch.
        try:
            for mix, part, images in generate_each_batch(
                den, plan, seeds, config, attributes=request, progress=progress
            ):
                label = request.label(mix.label)
                (out / label).mkdir(parents=True, exist_ok=True)
                paths = [image_path(out, label, s) for s in part]
                for img, p in zip(images, paths):
                    save_png(img, p)
                result.files.setdefault(label, []).extend(paths)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"interrupted; kept the {result.images} finished images in {out} "
                "(sample again with --force to redo them)"
            ) from None
        result.seconds = time.perf_counter() - start
        write_record(out, _record_entry(loaded, config, plan, seeds, result.seconds, request))
        return result
