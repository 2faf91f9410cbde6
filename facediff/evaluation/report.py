"""The evaluation report, typed: what :func:`~facediff.evaluation.evaluate` finds and what
``report.md``, the charts and ``facediff evaluate`` render.

:meth:`Report.to_dict` gives the ``report.json`` layout (field names are its keys).
"""

from __future__ import annotations

import dataclasses
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
class JudgeSection:
    trained_now: bool
    architecture: str
    config: dict[str, Any]
    split: dict[str, Any]
    heldout_accuracy: Accuracy
    train_seconds: float | None
    data_fingerprint: str


@dataclass
class SampleGroup:
    n: int
    weights: list[float]


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


@dataclass
class MixMemorisation:
    n: int
    median_nn_distance: float
    memorised_share: float = 0.0


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
    closest_pairs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GroupColour:
    n: int
    cast_rate: float
    mean_rgb: list[float]


@dataclass
class ColourSection:
    """Colour-cast rates (:mod:`facediff.evaluation.colour`); ``real_cast_rate`` is the floor."""

    reference: str
    coverage: float
    real_cast_rate: float
    real_mean_rgb: list[float]
    per_group: dict[str, GroupColour]


@dataclass
class Report:
    run: str
    data: dict[str, str]  # path, fingerprint
    categories: list[dict[str, Any]]
    samples: SamplesSection
    judge: JudgeSection
    hit_rate: list[HitRate]
    mix_balance: list[MixBalance]
    realism: dict[str, FeatureSpace]  # by feature space: judge, inception
    memorisation: Memorisation
    colour: ColourSection
    notes: list[str]
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
        return d
