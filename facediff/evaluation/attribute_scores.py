"""Attribute hit rates: does a model with attributes (gender, age bucket) give what is asked?

For each category and each requested attribute value (``each``: one attribute at a time,
the others left free; ``joint``: every combination, e.g. category × gender × age decade)
samples are generated with ``generate(..., attributes={name: value})`` and the judge's
attribute heads say which value each sample shows. A cell's *hit rate* is the share of
its samples judged as every requested value (Wilson 95% interval); beside it stand the
*free rate* — the share of the category's samples with the attribute left free that the
judge gives the same value, which is what a model ignoring the request would score — and
the judge's own held-out accuracy on photos of that category and value. The *worst cell*
is the one with the lowest hit rate.

With an attribute left free, the judge's view of a category's samples is set against the
data's mix of that attribute in the category (its known labels), and against the judge's
view of the category's held-out photos (what the judge's own errors make of the data).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from facediff.attributes import AttributeSet
from facediff.categories import CategoryMap
from facediff.evaluation.inputs import CellGroup, Group
from facediff.evaluation.judge import Judge
from facediff.evaluation.maths import total_variation, wilson_interval
from facediff.evaluation.report import (
    AttributeCell,
    AttributeHit,
    AttributeSection,
    FreeAttributeMix,
)


def _shares(predicted: torch.Tensor, n_values: int) -> np.ndarray:
    if len(predicted) == 0:
        return np.zeros(n_values)
    return np.bincount(predicted.numpy(), minlength=n_values) / len(predicted)


def _named(values: Sequence[str], shares: np.ndarray) -> dict[str, float]:
    return dict(zip(values, shares.round(6).tolist()))


def _judge_accuracy(judge: Judge, attribute: str, code: str, value: str) -> float | None:
    try:
        acc = judge.info["attribute_accuracy"][attribute]["per_category"][code][value]
        return acc["accuracy"]
    except (KeyError, TypeError):
        return None


def _free_rates(free: list[Group], attributes: AttributeSet) -> dict[tuple[int, str], np.ndarray]:
    """(category index, attribute) -> shares of the category's free samples per value."""
    out = {}
    for g in free:
        if g.mix.is_single and g.attributes is not None:
            for a in attributes:
                predicted = g.attributes[a.name].argmax(dim=1)
                out[(g.mix.indices[0], a.name)] = _shares(predicted, len(a.values))
    return out


def score_cell(
    cell: CellGroup,
    attributes: AttributeSet,
    categories: CategoryMap,
    judge: Judge,
    free_rates: dict[tuple[int, str], np.ndarray],
) -> AttributeCell:
    """Hit rates of one cell (every requested value, and each on its own)."""
    if cell.probs is None or cell.attributes is None:
        raise ValueError("score the cell's samples with the judge first")
    n = len(cell.images)
    code = categories[cell.category].code
    all_hit = torch.ones(n, dtype=torch.bool)
    per_attribute = {}
    for name, value in cell.requested.items():
        a = attributes.get(name)
        index = a.values.index(value)
        hit = cell.attributes[name].argmax(dim=1) == index
        all_hit &= hit
        hits = int(hit.sum())
        free = free_rates.get((cell.category, name))
        per_attribute[name] = AttributeHit(
            value=value,
            hits=hits,
            hit_rate=hits / n if n else 0.0,
            ci95=list(wilson_interval(hits, n)),
            free_rate=None if free is None else float(free[index]),
            judge_accuracy=_judge_accuracy(judge, name, code, value),
        )
    hits = int(all_hit.sum())
    category_hits = int((cell.probs.argmax(dim=1) == cell.category).sum())
    return AttributeCell(
        category=code,
        name=categories[cell.category].name,
        requested=dict(cell.requested),
        n=n,
        hits=hits,
        hit_rate=hits / n if n else 0.0,
        ci95=list(wilson_interval(hits, n)),
        per_attribute=per_attribute,
        category_hit_rate=category_hits / n if n else 0.0,
    )


def free_mixes(
    free: list[Group],
    attributes: AttributeSet,
    categories: CategoryMap,
    attribute_labels: torch.Tensor,
    labels: torch.Tensor,
    real: tuple[dict[str, torch.Tensor], torch.Tensor],
) -> list[FreeAttributeMix]:
    """Per single-category group and attribute: the judge's shares of the samples, of the
    category's held-out photos (``real``: their attribute probabilities and categories),
    and the data's shares among the category's known labels."""
    real_probs, real_labels = real
    rows = []
    for g in free:
        if not g.mix.is_single or g.attributes is None:
            continue
        k = g.mix.indices[0]
        for j, a in enumerate(attributes):
            v = len(a.values)
            samples = _shares(g.attributes[a.name].argmax(dim=1), v)
            judged = _shares(real_probs[a.name][real_labels == k].argmax(dim=1), v)
            known = attribute_labels[labels == k, j]
            data = _shares(known[known >= 0], v)
            rows.append(
                FreeAttributeMix(
                    category=categories[k].code,
                    attribute=a.name,
                    n=len(g.images),
                    samples=_named(a.values, samples),
                    judged_real=_named(a.values, judged),
                    data=_named(a.values, data),
                    known=int((known >= 0).sum()),
                    tvd=total_variation(samples, data) if bool((known >= 0).any()) else None,
                )
            )
    return rows


def attribute_section(
    cells: list[CellGroup],
    free: list[Group],
    *,
    attributes: AttributeSet,
    categories: CategoryMap,
    judge: Judge,
    attribute_labels: torch.Tensor,
    labels: torch.Tensor,
    real: tuple[dict[str, torch.Tensor], torch.Tensor],
    mode: str,
    per_cell: int,
) -> AttributeSection:
    """Hit rates per cell, the free-attribute mixes and the worst cell."""
    rates = _free_rates(free, attributes)
    scored = [score_cell(c, attributes, categories, judge, rates) for c in cells]
    worst = min(scored, key=lambda c: c.hit_rate, default=None)
    return AttributeSection(
        attributes=attributes.to_list(),
        cells_requested=mode,
        per_cell=per_cell,
        cells=scored,
        free=free_mixes(free, attributes, categories, attribute_labels, labels, real),
        worst_cell=worst,
    )


__all__ = ["attribute_section", "free_mixes", "score_cell"]
