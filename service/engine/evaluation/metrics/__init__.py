"""Evaluation metrics, one module per reference family, registered by name.

Import from here: `METRICS`, `metric_names()`, `get_metric(name)`, `resolve_parameters`,
and the types `EvalBatch`, `Metric`, `Parameter`, `Cascade` (see `base` for the contract).
"""

from service.engine.evaluation.metrics.base import (
    FAMILIES,
    METRICS,
    Cascade,
    EvalBatch,
    Metric,
    Parameter,
)
from service.engine.evaluation.metrics.registry import get_metric, metric_names, resolve_parameters

__all__ = [
    "FAMILIES",
    "METRICS",
    "Cascade",
    "EvalBatch",
    "Metric",
    "Parameter",
    "get_metric",
    "metric_names",
    "resolve_parameters",
]
