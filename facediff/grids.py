"""``grid``: one labelled PNG to look at a model — rows are categories and mixes, columns
are seeds, plus strips that sweep a mix's weights from A to B at a fixed seed.

A model trained with attributes takes the requested attributes for every row, and
``rows="age"`` (or ``"gender"``) draws one row per value of that attribute for each
category or mix (``I_0-9``, ``I_10-19``, …), the other attributes as requested or free.

Rows come from a run or export (generated here) or from a sample folder written by
``facediff sample`` (read back from ``<dir>/<LABEL>/<LABEL>_<seed>.png``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from facediff.attribute_request import AttributeRequest, resolve_request
from facediff.attributes import AttributeSet
from facediff.categories import CategoryMap
from facediff.config import DEFAULT_GRID_SEEDS, DEFAULT_STRIP_STEPS, SampleConfig
from facediff.errors import ConfigError, FacediffError, invalid
from facediff.files import save_image_atomic, save_image_new
from facediff.generation import generate, prepare_for
from facediff.guidance import parse_mix_spec
from facediff.imaging import tensor_to_image
from facediff.loading import LoadedModel, load_for_inference
from facediff.mix import Mix, parse_mix, resolve_mixes, same_weights
from facediff.progress import Progress, ProgressCallback, emit
from facediff.sample_folder import (
    mixed_origins,
    read_record,
    read_sample_png,
    recorded_labels,
    recorded_weights,
    seed_files,
)

GRID_FILE = "grid.png"
_PAD = 2
_MIN_CELL = 64  # small images are enlarged (nearest neighbour) to at least this size

Row = tuple[str, list[Image.Image]]


@dataclass
class GridResult:
    out: Path
    rows: int
    columns: int
    size: tuple[int, int]


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


#: The most pixels a grid may have: Pillow's own limit for opening an image
#: (``PIL.Image.MAX_IMAGE_PIXELS``); a bigger grid could not be opened again.
MAX_GRID_PIXELS = 89_478_485


def _cell_size(width: int) -> int:
    return width * max(1, -(-_MIN_CELL // width))


def _check_grid_size(image_size: int, rows: int, columns: int, option: str) -> None:
    """Refuse, before anything is generated or read, a grid too big to open again
    (``--seeds 100000`` would take hours and tens of GB of memory first)."""
    step = _cell_size(image_size) + _PAD
    width, height = columns * step + _PAD, rows * step + _PAD
    if width * height > MAX_GRID_PIXELS:
        raise ConfigError(
            f"{{}} {columns}: the grid would be at least {width}×{height} pixels, more than "
            f"Pillow opens ({MAX_GRID_PIXELS:,}); ask for fewer columns or rows",
            option,
        )


def compose_grid(
    rows: Sequence[Row], *, column_labels: Sequence[str] | None = None, cell: int | None = None
) -> Image.Image:
    """Lay out labelled rows of equally sized images on a white canvas.

    Each cell is ``cell`` pixels square (default: the image size, enlarged to at least
    64); the label column fits the longest row label. A row may have fewer images than
    the widest one. Size: ``label_w + cols·(cell+2) + 2`` by ``header + rows·(cell+2) + 2``.
    """
    if not rows or not any(images for _, images in rows):
        raise FacediffError("nothing to put in the grid")
    if cell is None:  # the largest image's, so that none is shrunk
        cell = _cell_size(max(im.width for _, images in rows for im in images))
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(_text_size(probe, label, font)[0] for label, _ in rows) + 3 * _PAD
    header = 0
    if column_labels:
        header = max(_text_size(probe, t, font)[1] for t in column_labels) + 3 * _PAD
    cols = max(len(images) for _, images in rows)
    width = label_w + cols * (cell + _PAD) + _PAD
    height = header + len(rows) * (cell + _PAD) + _PAD
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(column_labels or []):
        draw.text((label_w + j * (cell + _PAD) + _PAD, _PAD), text, fill="black", font=font)
    for i, (label, images) in enumerate(rows):
        y = header + i * (cell + _PAD) + _PAD
        th = _text_size(draw, label, font)[1]
        draw.text((_PAD, y + (cell - th) // 2), label, fill="black", font=font)
        for j, im in enumerate(images):
            tile = im.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(tile, (label_w + j * (cell + _PAD) + _PAD, y))
    return canvas


def strip_mixes(a: str, b: str, steps: int, categories: CategoryMap) -> list[Mix]:
    """Mixes with weights ``(1 − t)·A + t·B`` for ``steps`` values of t from 0 to 1."""
    if steps < 2:
        raise ConfigError(f"{{}} must be at least 2; got {steps}", "strip_steps")
    ma, mb = parse_mix(a, categories), parse_mix(b, categories)
    wa = dict(zip(ma.indices, ma.weights))
    wb = dict(zip(mb.indices, mb.weights))
    order = list(dict.fromkeys([*ma.indices, *mb.indices]))
    out = []
    for k in range(steps):
        t = k / (steps - 1)
        pairs = [(i, (1 - t) * wa.get(i, 0.0) + t * wb.get(i, 0.0)) for i in order]
        spec = ",".join(f"{categories[i].code}:{w!r}" for i, w in pairs if w > 0)
        out.append(parse_mix(spec, categories))
    return out


def _default_strip(categories: CategoryMap) -> tuple[str, str] | None:
    hybrid = next((m for m in resolve_mixes(categories) if not m.is_single), None)
    if hybrid is None:
        return None
    return categories[hybrid.indices[0]].code, categories[hybrid.indices[1]].code


def _row_requests(
    model_attributes: AttributeSet,
    attributes: Mapping[str, str | None] | None,
    attribute_guidance: Mapping[str, float] | None,
    by: str | None,
) -> list[AttributeRequest]:
    """The attribute request of each row of a mix: the request itself, or with ``by``
    one request per value of that attribute (checked before anything is generated)."""
    wanted = dict(attributes or {})
    if by is None:
        return [resolve_request(model_attributes, wanted, attribute_guidance)]
    if not model_attributes:
        raise ConfigError("{}: this model was trained without attributes", "rows")
    try:
        attribute = model_attributes.get(by)
    except ValueError as e:
        raise ConfigError("{}: " + str(e).replace("{", "{{").replace("}", "}}"), "rows") from None
    if wanted.get(by) is not None:
        raise ConfigError(
            f"{{}} {by} and {{}} both set: the rows go through every {by}", "rows", by
        )
    requests = [{**wanted, by: value} for value in attribute.values]
    return [resolve_request(model_attributes, r, attribute_guidance) for r in requests]


def rows_from_run(
    run: Path,
    config: SampleConfig,
    *,
    seeds: int,
    mixes: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    strip: tuple[str, str] | None = None,
    strip_steps: int = DEFAULT_STRIP_STEPS,
    attributes: Mapping[str, str | None] | None = None,
    attribute_guidance: Mapping[str, float] | None = None,
    rows_by: str | None = None,
    checkpoint_step: int | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[Row], list[str]]:
    """Generate the grid rows (mixes × seeds, then the strip) from a run or export.

    Rows are the named ``categories`` and ``mixes``; with ``mixes`` alone, every category
    and then the mixes; with neither, the default categories and mixes (with ``rows_by``,
    each category). ``rows_by`` draws one row per value of that attribute for each; the
    default A→B strip is then left out (``strip`` still adds one).
    """
    loaded = load_for_inference(Path(run), step=checkpoint_step, use_ema=config.use_ema)
    cats = loaded.categories
    codes = [c.code for c in cats]
    if mixes == []:
        plan = []
    elif categories:
        plan = resolve_mixes(cats, mixes, categories)
    elif rows_by is not None and not mixes:
        plan = resolve_mixes(cats, None, codes)
    else:
        plan = resolve_mixes(cats, mixes, codes if mixes else None)
    if strip is None and rows_by is None:
        strip = _default_strip(cats)
    sweep = strip_mixes(strip[0], strip[1], strip_steps, cats) if strip else []
    requests = _row_requests(loaded.attributes, attributes, attribute_guidance, rows_by)
    cells_per_mix = [(mix, request) for mix in plan for request in requests]
    _check_grid_size(
        loaded.model_config.sample_size,
        len(cells_per_mix) + (1 if sweep else 0),
        max(seeds, len(sweep)),
        "strip_steps" if len(sweep) > seeds else "seeds",
    )
    strip_request = None
    if sweep:  # the strip keeps the requested attributes
        fixed = {k: v for k, v in (attributes or {}).items() if v is not None}
        scales = {k: v for k, v in (attribute_guidance or {}).items() if k in fixed}
        strip_request = resolve_request(loaded.attributes, fixed, scales)
    # every job, so that auto --compile weighs each batch size the grid calls the UNet with
    jobs = [(mix, request, seeds) for mix, request in cells_per_mix]
    jobs += [(mix, strip_request, 1) for mix in sweep]
    den = prepare_for(loaded, config, jobs)
    seed_list = list(range(config.seed, config.seed + seeds))
    total = len(cells_per_mix) + (1 if sweep else 0)
    for warning in [*loaded.notes([*plan, *sweep]), *den.warnings]:
        emit(progress, Progress("grid", 0, total, message=warning))

    def notes(event: Progress) -> None:  # a batch split to fit in memory says so
        if event.message:
            emit(progress, Progress("grid", len(rows), total, message=event.message))

    rows: list[Row] = []
    for k, (mix, request) in enumerate(cells_per_mix):
        label = request.label(mix.label) + _untrained_note(mix, loaded)
        emit(progress, Progress("grid", k, total, {"row": label}))
        images = generate(den, mix, seed_list, config, attributes=request, progress=notes)
        rows.append((label, [tensor_to_image(im) for im in images]))
    if sweep:
        emit(progress, Progress("grid", len(cells_per_mix), total, {"row": "strip"}))
        cells = [
            generate(den, m, [config.seed], config, attributes=strip_request)[0] for m in sweep
        ]
        ends = loaded.never_trained(sweep)
        note = f"; {', '.join(ends)} never trained" if ends else ""
        label = f"{strip_request.label(f'{strip[0]}->{strip[1]}')} (seed {config.seed}{note})"
        rows.append((label, [tensor_to_image(im) for im in cells]))
    emit(progress, Progress("grid", total, total))
    return rows, [f"seed {s}" for s in seed_list]


def _untrained_note(mix: Mix, loaded: LoadedModel) -> str:
    """`` (never trained)`` for a row of a category the model has no training image of,
    `` (E never trained)`` for a mix with one: the picture travels without the warning."""
    untrained = loaded.never_trained([mix])
    if not untrained:
        return ""
    return " (never trained)" if mix.is_single else f" ({', '.join(untrained)} never trained)"


def rows_from_samples(
    folder: Path,
    *,
    seeds: int,
    specs: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[Row], list[str]]:
    """Rows read from a ``facediff sample`` folder, first seeds: one per label folder, or
    with ``specs`` (categories and mixes) the rows they name, in that order. A row whose
    images the folder's record says were drawn different ways is named in a warning."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FacediffError(f"sample folder not found: {folder}")
    present = {
        sub.name: files
        for sub in sorted(p for p in folder.iterdir() if p.is_dir())
        if (files := seed_files(folder, sub.name)[:seeds])
    }
    if not present:
        raise FacediffError(f"no <LABEL>/<LABEL>_<seed>.png images in {folder}")
    if specs:
        labels = _sampled_labels(folder, list(present), specs)
    else:
        order = {label: i for i, label in enumerate(recorded_labels(folder))}
        labels = sorted(present, key=lambda x: (order.get(x, len(order)), len(x), x))
    first_path = present[labels[0]][0][1]
    first = read_sample_png(first_path)
    columns = max(len(present[x]) for x in labels)
    _check_grid_size(first.width, len(labels), columns, "seeds")  # before reading the rest
    rows = [
        (label, [first if p == first_path else read_sample_png(p) for _, p in present[label]])
        for label in labels
    ]
    widest = max(im.width for _, images in rows for im in images)
    _check_grid_size(widest, len(labels), columns, "seeds")  # the cells fit the widest
    record = read_record(folder)
    for label in labels:
        ways = mixed_origins(record, label, [s for s, _ in present[label]])
        if ways is not None:
            message = (
                f"warning: row {label} shows images {ways}; sample each way into its own "
                "folder to keep them apart"
            )
            emit(progress, Progress("grid", 0, None, message=message))
    all_seeds = {s for label in labels for s, _ in present[label]}
    return rows, [f"seed {s}" for s in sorted(all_seeds)[:seeds]]


def _sampled_labels(folder: Path, present: list[str], specs: Sequence[str]) -> list[str]:
    """The rows of a sample folder that ``specs`` name: a row's own label (``OI``,
    ``I_female``), or a category or mix the record lists, spelt with codes in any order
    or form (``IO``, ``o+i``, ``I:1,O:1``), with each of its attribute rows. Names
    (``Oriental``) are not known to a sample folder's record."""
    recorded = recorded_weights(folder)
    codes = sorted({c for w in recorded.values() if isinstance(w, dict) for c in w})
    chosen: list[str] = []
    for spec in specs:
        found = [spec] if spec in present else []
        if not found and codes:
            try:
                indices, weights = parse_mix_spec(spec, codes, codes)
            except ValueError:
                indices, weights = (), ()
            want = {codes[i]: w for i, w in zip(indices, weights)}
            found = [
                label
                for label, got in recorded.items()
                if label in present and isinstance(got, dict) and same_weights(got, want)
            ]
        if not found:
            raise FacediffError(
                f"no images for {spec!r} in {folder}; its rows are {', '.join(present)}"
            )
        chosen += [label for label in found if label not in chosen]
    return chosen


def check_grid_path(out: Path, force: bool) -> None:
    """Refuse, before any sampling, a grid path the image cannot be written to: an
    existing file without ``force``, a folder, or a name without an image extension."""
    if out.is_dir():
        raise invalid("out", str(out), "it is a folder; give the image file to write")
    if out.exists() and not force:
        raise FacediffError(f"{out} already exists; use --force to overwrite")
    Image.init()
    if out.suffix.lower() not in Image.registered_extensions():
        raise invalid("out", str(out), "give an image file name ending in .png (or .jpg, .webp)")


def grid(
    run: Path | None,
    out: Path | None,
    config: SampleConfig,
    *,
    seeds: int = DEFAULT_GRID_SEEDS,
    mixes: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    strip: tuple[str, str] | None = None,
    strip_steps: int = DEFAULT_STRIP_STEPS,
    attributes: Mapping[str, str | None] | None = None,
    attribute_guidance: Mapping[str, float] | None = None,
    rows: str | None = None,
    from_samples: Path | None = None,
    checkpoint_step: int | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> GridResult:
    """Write the labelled grid PNG (default ``<run>/grid.png`` or ``<samples>/grid.png``).

    With ``from_samples`` the rows are read from that folder; if ``run`` is given too,
    the A→B strip is generated from it and added below. ``attributes`` (and
    ``attribute_guidance``) apply to every generated row; ``rows="age"`` draws a row
    per age bucket of each category or mix (see :func:`rows_from_run`).
    """
    if seeds < 1:
        raise ConfigError(f"{{}} must be at least 1; got {seeds}", "seeds")
    if rows is not None and from_samples is not None:
        raise ConfigError("{} needs a model; it cannot be used with {}", "rows", "from_samples")
    base = Path(from_samples) if from_samples is not None else Path(run or ".")
    out = Path(out) if out is not None else base / GRID_FILE
    check_grid_path(out, force)
    if from_samples is None:
        grid_rows, labels = rows_from_run(
            Path(run or "."),
            config,
            seeds=seeds,
            mixes=mixes,
            categories=categories,
            strip=strip,
            strip_steps=strip_steps,
            attributes=attributes,
            attribute_guidance=attribute_guidance,
            rows_by=rows,
            checkpoint_step=checkpoint_step,
            progress=progress,
        )
    else:
        if run is None:
            asked = [k for k, v in (attributes or {}).items() if v is not None]
            given = {"attribute_guidance": attribute_guidance, "strip": strip}
            asked += [k for k, v in given.items() if v]
            asked += ["checkpoint_step"] if checkpoint_step is not None else []
            asked += config.changed_image_settings()  # the images are read, not sampled
            if asked:
                raise ConfigError(
                    "{} needs a model; it cannot be used with {}", asked[0], "from_samples"
                )
        specs = [*(categories or ()), *(mixes or ())]
        grid_rows, labels = rows_from_samples(
            from_samples, seeds=seeds, specs=specs, progress=progress
        )
        if run is not None:  # add the strip from the model
            strip_rows, _ = rows_from_run(
                Path(run),
                config,
                seeds=0,
                mixes=[],
                strip=strip,
                strip_steps=strip_steps,
                attributes=attributes,
                attribute_guidance=attribute_guidance,
                checkpoint_step=checkpoint_step,
                progress=progress,
            )
            grid_rows += strip_rows
    image = compose_grid(grid_rows, column_labels=labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    image_format = Image.registered_extensions()[out.suffix.lower()]
    if force:
        save_image_atomic(image, out, image_format)
    else:  # a grid another process wrote there while this one sampled is kept
        try:
            save_image_new(image, out, image_format)
        except FileExistsError:
            raise FacediffError(
                f"{out} was written by another process meanwhile; kept it (use --force to "
                "overwrite, or choose another --out)"
            ) from None
    return GridResult(
        out=out,
        rows=len(grid_rows),
        columns=max(len(r[1]) for r in grid_rows),
        size=image.size,
    )
