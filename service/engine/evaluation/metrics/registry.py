"""The metric registry: imports every metric module once and looks metrics up by name.

`METRICS` (name -> `Metric`) is complete once this module is imported; the API's metric
lists and the documentation table (docs/evaluation.md) read it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from difflib import get_close_matches
from typing import Any

from model_registry.errors import InvalidInput
from service.engine.evaluation.metrics.base import METRICS, Metric

_PACKAGE = __name__.rpartition(".")[0]
_SKIP = {"base", "registry"}


def _load() -> None:
    for info in pkgutil.iter_modules(importlib.import_module(_PACKAGE).__path__):
        if info.name not in _SKIP:
            importlib.import_module(f"{_PACKAGE}.{info.name}")


def metric_names() -> tuple[str, ...]:
    """Every metric's API name, by family then name."""
    from service.engine.evaluation.metrics.base import FAMILIES

    return tuple(sorted(METRICS, key=lambda name: (FAMILIES.index(METRICS[name].family), name)))


def get_metric(name: str, *, field: str = "metrics") -> Metric:
    """The metric `name`, or a 422 naming `field`, the valid names and the closest one."""
    try:
        return METRICS[name]
    except KeyError:
        names = metric_names()
        close = get_close_matches(name, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise InvalidInput(
            f"{field}: unknown metric '{name}'{hint}; valid: {', '.join(names)}",
            field=field,
            choices=list(names),
        ) from None


def resolve_parameters(metric: Metric, given: Mapping[str, Any]) -> dict[str, Any]:
    """`metric`'s parameters: its defaults overridden by `given`, each checked (422 naming
    the parameter, or the valid names for an unknown one)."""
    unknown = sorted(set(given) - set(metric.parameters))
    if unknown:
        valid = ", ".join(metric.parameters) or "none"
        raise InvalidInput(
            f"{unknown[0]}: not a parameter of metric '{metric.name}' (valid: {valid})",
            field=unknown[0],
            choices=list(metric.parameters),
        )
    resolved = metric.defaults()
    for name, value in given.items():
        resolved[name] = metric.parameters[name].check(name, value)
    return resolved


_load()
