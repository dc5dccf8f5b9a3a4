"""Complexity (Quantus 0.6): how concentrated a map is, on |map| / max|map| per image,
over all its values (every channel of an input-space attribution).

- `sparseness`: the Gini index of the sorted values + 1e-7 (Chalasani et al. 2020), in
  [0, 1], higher is sparser;
- `complexity`: the entropy of the values as a distribution, -sum p log(p + 1e-12)
  (Bhatt et al. 2020), lower is simpler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.engine.evaluation.metrics.base import COMPLEXITY, EvalBatch, register_metric
from service.engine.evaluation.metrics.prepare import flat_abs


@register_metric(
    "sparseness",
    family=COMPLEXITY,
    reference="Quantus 0.6 Sparseness (Chalasani et al. 2020)",
    higher_is_better=True,
    summary="Gini index of |map|: 1 when one pixel holds all relevance",
)
def sparseness(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    values = np.sort(flat_abs(batch.maps) + 1e-7, axis=-1)
    count = values.shape[-1]
    rank = np.arange(1, count + 1)
    return ((2 * rank - count - 1) * values).sum(axis=-1) / (count * values.sum(axis=-1))


@register_metric(
    "complexity",
    family=COMPLEXITY,
    reference="Quantus 0.6 Complexity (Bhatt et al. 2020)",
    higher_is_better=False,
    summary="entropy of |map| as a distribution over the pixels",
)
def complexity(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    values = flat_abs(batch.maps)
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero map gives NaN
        values = values / values.sum(axis=-1, keepdims=True)
        return -(values * np.log(values + 1e-12)).sum(axis=-1)
