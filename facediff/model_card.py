"""The model card (``README.md``) of an exported model, with Hugging Face front matter.

It says what the model is, what it was trained on (categories and their image counts),
how long, how well each group is represented (the run's latest ``facediff evaluate``
report, when there is one), what it is for and what it must not be used for, and how to
load it. Built from recorded facts only: anything not recorded is said to be unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facediff.attributes import AttributeSet
from facediff.categories import CategoryMap


@dataclass
class CardFacts:
    """What the card reports; ``None`` means not recorded."""

    folder: str  # how the usage snippet names the exported folder
    categories: CategoryMap
    counts: list[int] | None  # training images per category, in label order
    counts_note: str  # where the counts come from, or why they are missing
    size: int
    preset: str | None
    parameters: int
    step: int
    images_seen: int | None
    seconds: float | None
    weights: str  # "ema" or "model"
    ema_decay: float | None
    schedule: dict[str, Any]
    precision: str | None
    scheduler_class: str
    sample_defaults: dict[str, Any]
    report: dict[str, Any] | None  # report.json of `facediff evaluate`
    report_note: str  # which report, or why there is none
    attributes: AttributeSet = field(default_factory=AttributeSet)  # empty: category only


def _n(v: int | None) -> str:
    return "not recorded" if v is None else f"{v:,}"


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _g(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return [*lines, *("| " + " | ".join(r) + " |" for r in rows), ""]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def front_matter(f: CardFacts) -> list[str]:
    tags = ["facediff", "class-conditional", "faces", "diffusion", "image-generation"]
    return [
        "---",
        "library_name: diffusers",
        "pipeline_tag: unconditional-image-generation",
        "tags:",
        *(f"- {t}" for t in tags),
        "---",
        "",
    ]


def summary_lines(f: CardFacts) -> list[str]:
    codes = ", ".join(f"{c.code} = {c.name}" for c in f.categories)
    return [
        f"# facediff model: {', '.join(c.name for c in f.categories)} faces, {f.size}×{f.size}",
        "",
        "A class-conditional diffusion model trained with facediff: a `diffusers.UNet2DModel` "
        "with one class embedding per category plus a null class for classifier-free "
        "guidance. It "
        f"generates faces of one category or of a hybrid mix of categories ({codes}).",
        "",
    ]


def category_lines(f: CardFacts) -> list[str]:
    rows = []
    for i, c in enumerate(f.categories):
        n = "not recorded" if f.counts is None else f"{f.counts[i]:,}"
        rows.append([c.code, c.name, f"`{c.prefix}*`", n, str(i)])
    rows.append(["—", "(null)", "—", "—", str(f.categories.null_label)])
    if f.counts is None:
        intro = f"Training image counts are not known: {f.counts_note}."
    else:
        intro = f"Training images per category ({sum(f.counts):,} in all), {f.counts_note}."
    untrained = [c for i, c in enumerate(f.categories) if f.counts is not None and not f.counts[i]]
    never = []
    for c in untrained:
        never += [
            f"> **Never trained:** the model saw no image of {c.name} ({c.code}): its "
            f"{c.code} samples, and mixes with {c.code}, come from an untrained label.",
            "",
        ]
    return [
        "## Categories and training data",
        "",
        f"{intro} A category's label is its position; the last label is the null class "
        "used for guidance.",
        "",
        *_table(["code", "name", "file prefix", "training images", "label"], rows),
        *never,
    ]


def attribute_lines(f: CardFacts) -> list[str]:
    """The attributes the model is conditioned on, and how to ask for them."""
    if not f.attributes:
        return []
    rows = [[a.name, ", ".join(a.values)] for a in f.attributes]
    example = ", ".join(f'"{a.name}": "{a.values[-1]}"' for a in f.attributes)
    options = " ".join(f"--{a.name} {a.values[-1]}" for a in f.attributes)
    return [
        "## Attributes",
        "",
        "Besides the category, the model is conditioned on these attributes, each with its "
        "own null value (left free when not requested); their embeddings are summed into the "
        f"class embedding. Ask for them with `attributes={{{example}}}` in the pipeline or "
        f"`{options}` with `facediff sample`; `attribute_guidance={{name: scale}}` gives one "
        "its own guidance term.",
        "",
        *_table(["attribute", "values"], rows),
    ]


def training_lines(f: CardFacts) -> list[str]:
    s = f.schedule
    weights = "EMA" if f.weights == "ema" else "raw (not EMA)"
    if f.weights == "ema" and f.ema_decay is not None:
        weights += f" (decay {f.ema_decay})"
    d = f.sample_defaults
    rows = [
        ["resolution", f"{f.size}×{f.size} px"],
        ["architecture", f"preset `{f.preset or 'unknown'}`, {f.parameters:,} parameters"],
        ["training steps", _n(f.step)],
        ["training images seen", _n(f.images_seen)],
        ["training time", _duration(f.seconds)],
        ["precision", f.precision or "not recorded"],
        [
            "noise schedule",
            f"`{s.get('beta_schedule')}`, {s.get('num_train_timesteps')} steps, "
            f"`{s.get('prediction_type')}` prediction",
        ],
        ["weights", weights],
        [
            "scheduler in this folder",
            f"`{f.scheduler_class}`, {d.get('num_inference_steps')} steps, guidance "
            f"{d.get('guidance_scale')}, mix mode {d.get('mix_mode')} (facediff's defaults)",
        ],
    ]
    return ["## Training", "", *_table(["setting", "value"], rows)]


def _realism_rows(report: dict[str, Any]) -> list[list[str]]:
    from facediff.evaluation.report import pooled_name  # evaluation imports exporting, us

    rows = []
    for space, sec in report.get("realism", {}).items():
        items = list(sec.get("per_category", {}).items())
        if sec.get("pooled"):
            name = pooled_name(sec.get("pooled_categories") or [], sec.get("per_category", {}))
            items.append((name, sec["pooled"]))
        for name, r in items:
            rows.append([space, name, str(r.get("n_samples")), _g(r.get("fd")), _g(r.get("kid"))])
    return rows


def evaluation_lines(f: CardFacts) -> list[str]:
    lines = ["## Evaluation", ""]
    r = f.report
    if r is None:
        return [*lines, f.report_note, ""]
    acc = r.get("judge", {}).get("heldout_accuracy", {})
    lines += [
        f"From {f.report_note}{_sampled_with(r)}. Every judged number depends on the judge, "
        "a classifier trained on the same file-name labels: its held-out accuracy is "
        f"**{_f(acc.get('overall'))}** ({_f(acc.get('balanced'))} balanced over categories).",
        "",
    ]
    lines += _judged_lines(r) + _realism_lines(r) + _colour_lines(r)
    memo = r.get("memorisation", {})
    if memo.get("memorised_share") is not None:
        lines += [f"Memorised-like share of samples: {_f(memo['memorised_share'])}.", ""]
    alike = {
        k: v["look_alike_share"]
        for k, v in memo.get("per_mix", {}).items()
        if v.get("look_alike_share") is not None
    }
    if alike:  # reports before look-alike shares were measured have none
        worst, q = max(alike, key=alike.get), memo.get("look_alike_quantile") or 0.0
        lines += [
            f"Look-alike samples (a near-twin among their own group, closer than {1 - q:.0%} "
            f"of photos come to each other; photos about {q:.2f}): at most "
            f"{_f(alike[worst])}, in {worst}.",
            "",
        ]
    for w in r.get("warnings", []):
        lines += [f"> **Warning:** {w}.", ""]
    return lines


def _sampled_with(r: dict[str, Any]) -> str:
    s = r.get("samples", {})
    cfg = s.get("sample_config")
    if not cfg:
        return ""
    return (
        f"; {s.get('per_group')} samples per group, {cfg.get('sampler')} {cfg.get('steps')} "
        f"steps, guidance {cfg.get('guidance')}, mix mode {cfg.get('mix_mode')}"
    )


def _judged_lines(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    hits = [
        [h["category"], h["name"], str(h["n"]), _f(h["hit_rate"]), _ci(h.get("ci95"))]
        for h in r.get("hit_rate", [])
    ]
    if hits:
        lines += ["Hit rate: share of samples asked for a category that the judge calls it.", ""]
        lines += _table(["category", "name", "samples", "hit rate", "95% CI"], hits)
    mixes = [[m["mix"], str(m["n"]), _f(m["balance"])] for m in r.get("mix_balance", [])]
    if mixes:
        lines += ["Mix balance: 1 − total variation distance to the requested weights.", ""]
        lines += _table(["mix", "samples", "balance"], mixes)
    return lines


def _realism_lines(r: dict[str, Any]) -> list[str]:
    rows = _realism_rows(r)
    if not rows:
        return []
    held = (r.get("data") or {}).get("heldout")
    against = (
        f"{held.get('images')} photos the model never trained on"
        if isinstance(held, dict)
        else "held-out photos (held out from the judge; the model trained on them)"
    )
    from facediff.evaluation.report import GRAIN_BLIND  # evaluation imports exporting, us

    judged = any(row[0] == "judge" for row in rows)
    caveat = f" The judge's features {GRAIN_BLIND}."
    return [
        f"Realism against {against} (lower is better; FD is biased upward from few "
        "samples, KID is not)." + (caveat if judged else ""),
        "",
        *_table(["features", "category", "samples", "FD", "KID"], rows),
    ]


def _colour_lines(r: dict[str, Any]) -> list[str]:
    c = r.get("colour")
    if not c or not c.get("per_group"):
        return []
    rows = [[label, str(v.get("n")), _f(v.get("cast_rate"))] for label, v in c["per_group"].items()]
    rows.append(["held-out photos", "", _f(c.get("real_cast_rate"))])
    columns = ["group", "samples", "colour-cast rate"]
    if any("shift" in v for v in c["per_group"].values()):  # reports since the shift
        for row in rows[:-1]:
            row.append(_f((c["per_group"].get(row[0]) or {}).get("shift"), 2))
        floor = [v for v in (c.get("real_shift") or {}).values() if isinstance(v, (int, float))]
        rows[-1].append(f"≤ {_f(max(floor), 2)}" if floor else "n/a")
        columns.append("colour shift")
    noise = r.get("noise")
    if isinstance(noise, dict) and isinstance(noise.get("per_group"), dict):
        groups = noise["per_group"]
        for row in rows[:-1]:
            row.append(_f((groups.get(row[0]) or {}).get("noise_rate")))
        rows[-1].append(_f(noise.get("real_noise_rate")))
        columns.append("noise rate")
    return [
        "Colour-cast rate: share of samples whose per-channel colour mean and spread fall "
        "outside the range of nearly all real photos (green, blue or magenta faces). Colour "
        "shift: how far the samples' average colour lies from the photos' of the same "
        "categories, in units of one category's spread (a tint the whole set shares). Noise "
        "rate: share of samples grainier (median absolute Laplacian) than 99% of the photos.",
        "",
        *_table(columns, rows),
    ]


def _ci(ci: Any) -> str:
    return "n/a" if not ci else f"{ci[0]:.3f}–{ci[1]:.3f}"


def usage_lines(f: CardFacts) -> list[str]:
    folder = f.folder
    first, mix = f.categories[0].code, "".join(c.code for c in f.categories[:3])
    return [
        "## Use it",
        "",
        "With diffusers alone (this folder ships the pipeline code as `pipeline.py` and",
        "`guidance.py`; read them before trusting them):",
        "",
        "```python",
        "import torch",
        "from diffusers import DiffusionPipeline",
        "",
        "pipe = DiffusionPipeline.from_pretrained(",
        f'    "{folder}", custom_pipeline="{folder}/pipeline.py", trust_remote_code=True',
        ")",
        "seeds = [torch.Generator().manual_seed(s) for s in range(4)]",
        f'faces = pipe(category="{first}", generator=seeds).images  # a list of PIL images',
        f'hybrid = pipe(mix="{mix}", generator=seeds, guidance_scale=3.0).images',
        "```",
        "",
        "With facediff installed: `from facediff.pipeline import FaceDiffPipeline; "
        f'FaceDiffPipeline.from_pretrained("{folder}")`, or from the command line '
        f"`facediff sample {folder} --mix {mix} -n 8`. `category=` takes a code or a name; "
        '`mix=` a spec (`"OIE"`, `"O:0.7,I:0.3"`), a dict of weights or a list; '
        '`mix_mode="compose"` or `"blend"`; any diffusers scheduler can be swapped in '
        "(`pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)`). The same "
        "per-image generators give the same images as `facediff sample --seed`.",
        "",
    ]


def limitation_lines(f: CardFacts) -> list[str]:
    return [
        "## Intended use and limitations",
        "",
        "- **Intended use:** research and teaching on conditional generative models, "
        "measuring how well a model represents each group, and synthetic illustrations "
        "that are clearly labelled as generated.",
        "- **The labels are coarse.** Categories come from file-name prefixes: ethnicity "
        "labels that were self-declared or annotated by whoever built the dataset, a few "
        "broad groups standing for great human variety. They are not ground truth about "
        "anyone, and the model learns the dataset's idea of each group, including its "
        "biases and its imbalance (counts above).",
        "- **Do not infer ethnicity.** Outputs, and this model's class embeddings, must not "
        "be used to infer, predict or label anyone's ethnicity, nor to make decisions "
        "about real people. The generated faces are not photos of real people.",
        "- **Quality varies by group.** Fewer training images usually means worse samples "
        "for that group; check the evaluation above before relying on any category.",
        f"- **Small images.** {f.size}×{f.size} px; not suitable for identification, "
        "biometrics or any forensic use.",
        "- **Training data terms apply.** The licence and consent terms of the photos the "
        "model was trained on carry over to it and to what it generates.",
        "",
    ]


def render_model_card(f: CardFacts) -> str:
    lines = front_matter(f) + summary_lines(f) + category_lines(f) + attribute_lines(f)
    lines += training_lines(f)
    lines += evaluation_lines(f) + usage_lines(f) + limitation_lines(f)
    return "\n".join(lines)


def shown(path: Path | str, parts: int = 3) -> str:
    """The last ``parts`` components of a path: enough to recognise it in a card that is
    published, without the trainer's home folder."""
    return Path(*Path(path).parts[-parts:]).as_posix()


def report_note(path: Path, report: dict[str, Any] | None, checkpoint: Path, step: int) -> str:
    """Where the card's evaluation numbers come from, or why there are none."""
    if report is None:
        return (
            f"No `facediff evaluate` report was found for this run ({shown(path)}); run "
            "`facediff evaluate RUN` and export again to include hit rates, mix balance "
            "and realism."
        )
    note = f"`facediff evaluate` ({shown(path)})"
    drawn = report.get("samples", {}).get("checkpoint_step")
    if drawn is not None:
        if drawn == step:
            return f"{note}, on samples from this checkpoint (step {step})"
        return f"{note}, on samples from step {drawn}, not the exported step {step}"
    if path.stat().st_mtime < checkpoint.stat().st_mtime:
        note += ", written before the exported checkpoint was saved: it describes an earlier step"
    return note
