"""``export``: a standard diffusers pipeline folder with a model card.

Layout::

    <out>/model_index.json  FaceDiffPipeline: components, categories, sampling defaults
    <out>/unet/             UNet2DModel (config.json + safetensors)
    <out>/scheduler/        the scheduler `facediff sample` uses by default, with its exact
                            settings, on the run's recorded noise schedule
    <out>/pipeline.py       copies of facediff/pipeline.py, facediff/guidance.py,
    <out>/guidance.py       facediff/attributes.py and facediff/deep_cache.py, for
    <out>/attributes.py     DiffusionPipeline.from_pretrained(out, custom_pipeline=...)
    <out>/deep_cache.py
    <out>/facediff.json     categories, codes, null label, attributes, size, step, model
                            and schedule
    <out>/README.md         the model card (Hugging Face front matter)

``FaceDiffPipeline.from_pretrained(out)`` loads it with facediff installed;
``facediff sample``/``grid``/``evaluate`` read it through ``facediff.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facediff import folder_lock
from facediff.attributes import embedding_sizes
from facediff.categories import CategoryMap
from facediff.checkpoint import read_state
from facediff.config import ModelConfig, SampleConfig
from facediff.dataset import read_manifest
from facediff.errors import CheckpointError, FacediffError, UsageError, first_line
from facediff.files import TMP_SUFFIX, naming, write_json_atomic
from facediff.guidance import attach_attributes
from facediff.loading import (
    LoadedModel,
    load_for_inference,
    recorded_attributes,
    recorded_counts,
)
from facediff.model import count_parameters
from facediff.model_card import CardFacts, render_model_card, report_note, shown

EXPORT_FORMAT_VERSION = 2
EXPORT_INFO_FILE = "facediff.json"
#: Files of the facediff package copied into the folder for ``custom_pipeline=``.
PIPELINE_FILES = {
    "pipeline.py": "pipeline.py",
    "guidance.py": "guidance.py",
    "attributes.py": "attributes.py",
    "deep_cache.py": "deep_cache.py",
}
MODEL_CARD_FILE = "README.md"


#: An export is written into ``<out>/.export-<pid>.tmp`` and moved into place once whole.
STAGING_PREFIX = ".export-"


@dataclass
class ExportResult:
    out: Path
    step: int
    weights: str  # "ema" or "model"
    source: Path
    report: Path | None  # the evaluation report summarised in the model card
    warnings: list[str] = field(default_factory=list)  # e.g. a damaged newer checkpoint skipped


def sample_defaults(config: SampleConfig) -> dict[str, Any]:
    """The pipeline's defaults for a call that leaves them out: facediff's own."""
    defaults: dict[str, Any] = {
        "num_inference_steps": config.steps,
        "guidance_scale": config.guidance,
        "mix_mode": config.mix_mode,
    }
    return defaults | config.recorded_extras()


def build_pipeline(
    loaded: LoadedModel, config: SampleConfig | None = None, counts: list[int] | None = None
) -> Any:
    """A :class:`FaceDiffPipeline` of ``loaded`` with facediff's default sampler; ``counts``
    (training images per category, label order) default to the model's recorded ones."""
    from facediff.generation import make_scheduler
    from facediff.pipeline import FaceDiffPipeline

    config = config or SampleConfig()
    return FaceDiffPipeline(
        unet=loaded.unet,
        scheduler=make_scheduler(config.sampler, loaded.scheduler_config),
        categories=loaded.categories.to_list(),
        sample_defaults=sample_defaults(config),
        attributes=loaded.attributes.to_list(),
        training_counts=counts
        if counts is not None
        else (list(loaded.training_counts.values()) if loaded.training_counts else None),
    )


def export(
    run: Path,
    out: Path,
    *,
    checkpoint_step: int | None = None,
    use_ema: bool = True,
    force: bool = False,
    report: Path | None = None,
) -> ExportResult:
    """Write ``run``'s checkpoint (EMA weights by default) as a diffusers folder ``out``.

    The model card summarises ``report`` (a ``facediff evaluate`` report.json), by default
    ``<run>/evaluation/report.json`` when it exists.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FacediffError(f"--out {out} is a file, not a folder")
    with folder_lock.writing(out):  # one export per folder
        if out.exists() and any(out.iterdir()) and not force:
            raise FacediffError(f"{out} already exists and is not empty; use --force to overwrite")
        loaded = load_for_inference(Path(run), step=checkpoint_step, use_ema=use_ema)
        if loaded.weights == "export":
            raise FacediffError(f"{run} is already an exported model")
        state = read_state(loaded.source)
        run_dir = loaded.source.parent.parent  # <run>/checkpoints/step-XXXXXXXX
        report_path = (
            Path(report) if report is not None else default_report_path(run_dir, loaded.step)
        )
        evaluation = read_report(report_path)
        if report is not None and evaluation is None:
            raise UsageError(f"{report}: not found or not a `facediff evaluate` report.json")
        if report is not None and evaluation is not None:
            _check_report_run(report_path, evaluation, run_dir)
        config = SampleConfig()
        counts, counts_note = training_counts(state)
        pipe = build_pipeline(loaded, config, counts)
        try:  # the card first: a damaged report stops the export before anything is written
            card = render_model_card(
                CardFacts(
                    folder=out.name,
                    categories=loaded.categories,
                    counts=counts,
                    counts_note=counts_note,
                    size=loaded.model_config.sample_size,
                    preset=state.get("train", {}).get("preset"),
                    parameters=count_parameters(loaded.unet),
                    step=loaded.step,
                    images_seen=state.get("images_seen"),
                    seconds=state.get("seconds"),
                    weights=loaded.weights,
                    ema_decay=state.get("train", {}).get("ema_decay"),
                    schedule=loaded.scheduler_config,
                    precision=state.get("precision"),
                    scheduler_class=type(pipe.scheduler).__name__,
                    sample_defaults=sample_defaults(config),
                    report=evaluation,
                    report_note=report_note(report_path, evaluation, loaded.source, loaded.step),
                    attributes=loaded.attributes,
                )
            )
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            if evaluation is None:
                raise
            raise UsageError(
                f"{report_path}: a damaged `facediff evaluate` report.json ({first_line(e)}); "
                "evaluate again, or pass another with --report"
            ) from None
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(f"{STAGING_PREFIX}*{TMP_SUFFIX}"):  # a killed export's (held: ours)
            shutil.rmtree(stale, ignore_errors=True)
        staging = out / f"{STAGING_PREFIX}{os.getpid()}{TMP_SUFFIX}"
        try:
            staging.mkdir()
            pipe.save_pretrained(staging, safe_serialization=True)
            package = Path(__file__).parent
            for src, dst in PIPELINE_FILES.items():
                shutil.copyfile(package / src, staging / dst)
            fingerprint = (state.get("data") or {}).get("fingerprint")
            info = _export_info(loaded, config, counts, fingerprint)
            write_json_atomic(staging / EXPORT_INFO_FILE, info)
            (staging / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
        except Exception as e:  # a full disk: the folder is left as it was
            shutil.rmtree(staging, ignore_errors=True)
            named = naming(e, out)
            why = named.strerror if isinstance(named, OSError) else first_line(e)
            raise FacediffError(
                f"cannot write the export to {out} ({why}); nothing in it was changed"
            ) from None
        except BaseException:  # Ctrl-C
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _move_into(staging, out)
        return ExportResult(
            out=out,
            step=loaded.step,
            weights=loaded.weights,
            source=loaded.source,
            report=report_path if evaluation is not None else None,
            warnings=loaded.notes(),
        )


def _move_into(staging: Path, out: Path) -> None:
    """Move each file and folder of a complete export in ``staging`` into ``out``,
    replacing those of the same name (an older export's, with ``--force``); renames only,
    so nothing can fail half-written."""
    for entry in sorted(staging.iterdir()):
        target = out / entry.name
        aside = None
        if target.is_dir() and not target.is_symlink():  # a folder is not replaced by rename
            aside = out / f".{entry.name}.old-{os.getpid()}{TMP_SUFFIX}"
            os.rename(target, aside)
        os.replace(entry, target)
        if aside is not None:
            shutil.rmtree(aside)
    staging.rmdir()


def _export_info(
    loaded: LoadedModel, config: SampleConfig, counts: list[int] | None, fingerprint: Any
) -> dict[str, Any]:
    cats = loaded.categories
    return {
        "facediff_export_version": EXPORT_FORMAT_VERSION,
        "categories": cats.to_list(),
        "codes": {c.code: i for i, c in enumerate(cats)},
        "null_label": cats.null_label,
        "attributes": loaded.attributes.to_list(),
        "training_counts": counts,
        "data_fingerprint": fingerprint if isinstance(fingerprint, str) else None,
        "size": loaded.model_config.sample_size,
        "step": loaded.step,
        "weights": loaded.weights,
        "model": loaded.model_config.to_dict(),
        "scheduler": loaded.scheduler_config,
        "sampler": config.sampler,
    }


def training_counts(state: dict[str, Any]) -> tuple[list[int] | None, str]:
    """Images per category of the prepared data the run trained on, from its manifest.

    Only trusted when the manifest's packed-file hash is the run's recorded fingerprint.
    """
    data = state.get("data") or {}
    recorded = recorded_counts(data.get("counts"), CategoryMap.from_list(state["categories"]))
    if recorded is not None:
        return list(recorded.values()), "as `train` recorded them"
    path = data.get("path")
    if not path:
        return None, "the run does not record its prepared data"
    try:
        manifest = read_manifest(Path(path))
        if manifest["packed"]["sha256"] != data.get("fingerprint"):
            return None, f"the prepared data `{shown(path, 1)}` has changed since training"
        counts = [int(c["count"]) for c in manifest["categories"]]
    except (FacediffError, KeyError, TypeError, ValueError):
        return None, f"the prepared data `{shown(path, 1)}` is missing or unreadable"
    return counts, f"from the manifest of the prepared data `{shown(path, 1)}`"


def _check_report_run(path: Path, report: dict[str, Any], run_dir: Path) -> None:
    """Refuse a report of another run: its numbers would describe another model on the
    card. The run it names is checked where it still exists (it is the path given to
    ``evaluate``); a report whose run has moved, or of an exported folder (perhaps this
    run's own export), is taken as it is."""
    named = report.get("run")
    if not isinstance(named, str) or not named:
        return
    try:
        other = Path(named)
        if not (other / "checkpoints").is_dir() or other.resolve() == run_dir.resolve():
            return
    except (OSError, ValueError):
        return
    raise UsageError(
        f"--report {path} evaluates the run {named}, not {run_dir}: the model card would "
        "show another model's numbers; evaluate this run, or export without --report"
    )


def default_report_path(run_dir: Path, step: int) -> Path:
    """The report ``facediff evaluate RUN --checkpoint STEP`` wrote, if there is one, else
    the one ``facediff evaluate RUN`` writes (for the newest checkpoint at the time)."""
    from facediff.evaluation.pipeline import REPORT_JSON, default_out

    for_step = default_out(run_dir, step) / REPORT_JSON
    return for_step if for_step.is_file() else default_out(run_dir, None) / REPORT_JSON


def read_report(path: Path) -> dict[str, Any] | None:
    """A ``facediff evaluate`` report.json, or None when missing or unreadable."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and "hit_rate" in report else None


def read_export_info(path: Path) -> dict[str, Any]:
    """An export folder's ``facediff.json`` (``OSError`` or ``ValueError`` when it is
    missing or not JSON)."""
    return json.loads((path / EXPORT_INFO_FILE).read_text(encoding="utf-8"))


def load_export(path: Path) -> LoadedModel:
    """Load a folder written by :func:`export` (see :func:`load_for_inference`)."""
    from diffusers import UNet2DModel

    try:
        info = read_export_info(path)
        categories = CategoryMap.from_list(info["categories"])
        model_cfg = ModelConfig.from_dict(info["model"])
        sched = dict(info["scheduler"])
        attributes = recorded_attributes(info, model_cfg)
        unet = UNet2DModel.from_pretrained(path / "unet", low_cpu_mem_usage=False)
        attach_attributes(unet, embedding_sizes(len(categories), attributes.sizes))
        step = int(info.get("step", 0))
    except (OSError, KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot load exported model {path}: {e}") from None
    counts = recorded_counts(info.get("training_counts"), categories)
    return LoadedModel(
        unet,
        categories,
        model_cfg,
        sched,
        step,
        path,
        "export",
        attributes=attributes,
        training_counts=counts,
    )
