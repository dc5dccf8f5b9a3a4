"""The validated plan of an evaluation: the methods with their own parameters, the metrics
with theirs, and where the masks of the localisation metrics come from.

Options arrive as `options.<method or metric>.<name>=value` query parameters (strings);
each is typed by the default it replaces and checked by the method's plan or the metric's
parameter list, so a parameter of another method or metric answers 422 naming both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from model_registry.spec import CLASSIFICATION
from service.engine.attribution.target_requests import TAKES
from service.engine.evaluation.explainers import (
    Explainer,
    method_names,
    method_parameters,
    plan_explainer,
)
from service.engine.evaluation.metrics import Metric, get_metric, metric_names, resolve_parameters

OPTION_PREFIX = "options."
MAX_METHODS = 16
MAX_METRICS = 24
MASKS = "masks"
MASK_SOURCES = (
    "masks come from a dataset: the built-in digits (each digit's own strokes), or a folder "
    'dataset whose [[datasets]] table in the models file names `masks = "/path"` (one PNG '
    "per picture under the same relative name, non-zero = object); send such pictures as "
    "image=dataset:NAME/INDEX, or evaluate the dataset (POST /v1/models/{model}/datasets/"
    "{dataset}/evaluate)"
)


@dataclass(frozen=True)
class MetricChoice:
    """One metric and the parameters it runs with (its defaults, overridden by the client's)."""

    name: str
    metric: Metric
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_masks(self) -> bool:
        return MASKS in self.metric.needs


@dataclass(frozen=True)
class EvalPlan:
    """A validated evaluation: methods, metrics, the seed of every random draw."""

    explainers: tuple[Explainer, ...]
    metrics: tuple[MetricChoice, ...]
    seed: int = 0

    @property
    def needs_masks(self) -> bool:
        return any(choice.needs_masks for choice in self.metrics)


def split_options(pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """`options.<name>.<parameter>=value` query pairs -> {name: {parameter: value}}."""
    found: dict[str, dict[str, str]] = {}
    for key, value in pairs:
        if not key.startswith(OPTION_PREFIX):
            continue
        name, dot, parameter = key[len(OPTION_PREFIX) :].partition(".")
        if not dot or not name or not parameter:
            raise InvalidInput(
                f"{key[:80]}: write options.<method or metric>.<parameter>=value",
                field=key[:80],
            )
        found.setdefault(name, {})[parameter] = value
    return found


def coerce(where: str, value: str, default: Any) -> Any:
    """A method parameter's query string typed as the `default` it replaces: bool, int,
    float, or (default None) a number when it reads as one, else the text."""
    try:
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered not in {"true", "false", "1", "0"}:
                raise ValueError(value)
            return lowered in {"true", "1"}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return _finite(float(value))
        if default is None:
            for kind in (int, float):
                try:
                    return _finite(kind(value))
                except ValueError:
                    pass
        return value
    except (ValueError, InvalidInput) as exc:
        raise InvalidInput(
            f"{where}: '{value[:40]}' is not a {type(default).__name__} (default {default!r})",
            field=where,
        ) from exc


def _finite(number: Any) -> Any:
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(number)
    return number


def _metric(name: str, given: Mapping[str, str]) -> MetricChoice:
    """The metric and its parameters: defaults, overridden by the client's (checked by the
    metric's own bounds, `resolve_parameters`)."""
    metric = get_metric(name)
    for key in given:
        if key not in metric.parameters:
            where = f"options.{name}.{key}"
            takes = ", ".join(metric.parameters) or "no parameters"
            raise InvalidInput(
                f"{where}: not a parameter of metric '{name}' (it takes {takes})",
                field=where,
                metric=name,
                choices=list(metric.parameters),
            )
    try:
        return MetricChoice(name, metric, resolve_parameters(metric, given))
    except InvalidInput as exc:  # named as the client sent it: options.<metric>.<parameter>
        raise InvalidInput(
            f"options.{name}.{exc.detail}", field=f"options.{name}.{exc.field}", **exc.extra
        ) from None


def _check_input_counts(model: LoadedModel, choice: MetricChoice) -> None:
    """A parameter that counts input values (`Parameter.counts_input_values`) at most the
    model input's C x H x W; 422 naming it as the client sent it."""
    values = model.spec.in_channels * math.prod(model.spec.input_size)
    for key, parameter in choice.metric.parameters.items():
        given = choice.parameters[key]
        if parameter.counts_input_values and given > values:
            where = f"options.{choice.name}.{key}"
            raise InvalidInput(
                f"{where}: {given} is more than the {values} values of model '{model.name}''s "
                f"input ({model.spec.in_channels} x {model.spec.input_size[0]} x "
                f"{model.spec.input_size[1]})",
                field=where,
                valid_range=[1, values],
            )


def require_classifier(model: LoadedModel) -> None:
    """A dataset evaluation explains each picture's predicted or label class: 422 for a
    segmentation or detection model, naming the per-batch endpoint that takes its targets."""
    task = model.spec.task
    if task != CLASSIFICATION:
        raise InvalidInput(
            f"model: a dataset evaluation explains each picture's predicted or label class, "
            f"so it takes classifiers only; '{model.name}' is a {task} model: evaluate its "
            f"pictures with POST /v1/models/{model.name}/evaluate and a region or box target "
            f"({TAKES[task]}), whose region or box is also the localisation mask "
            "(docs/evaluation.md)",
            field="model",
            task=task,
        )


def _check_task(model: LoadedModel, chosen: tuple[MetricChoice, ...]) -> None:
    """A metric defined for a classifier's class only (`Metric.classes_only`, e.g.
    random-logit): 422 naming it and why, with the metrics a region or box target takes."""
    if model.spec.task == CLASSIFICATION:
        return
    for choice in chosen:
        if choice.metric.classes_only:
            fits = [n for n in metric_names() if not get_metric(n).classes_only]
            raise InvalidInput(
                f"metrics: {choice.name} does not apply to '{model.name}', a "
                f"{model.spec.task} model: {choice.metric.classes_only}. Metrics for its "
                f"region or box targets: {', '.join(fits)}",
                field="metrics",
                metric=choice.name,
                choices=fits,
            )


def plan_evaluation(
    model: LoadedModel,
    *,
    methods: list[str],
    metrics: list[str],
    options: Mapping[str, Mapping[str, str]],
    seed: int = 0,
    masks: bool = False,
) -> EvalPlan:
    """Check every method, metric and option before any picture is read.

    A segmentation or detection model is evaluated for its region or box target (the
    caller resolves it); the metrics that explain other classes of a classifier answer 422.

    Args:
        masks: whether every picture comes with a mask (a dataset's, or the region or box
            of a segmentation or detection target); a localisation metric without them
            answers 422 naming where masks come from.
    """
    for what, names, cap in (("methods", methods, MAX_METHODS), ("metrics", metrics, MAX_METRICS)):
        if not names:
            raise InvalidInput(f"{what}: name at least one, comma-separated", field=what)
        if len(names) > cap:
            raise InvalidInput(f"{what}: at most {cap}, got {len(names)}", field=what)
    unknown = [name for name in options if name not in methods and name not in metrics]
    if unknown:
        raise InvalidInput(
            f"options.{unknown[0][:40]}: '{unknown[0][:40]}' is none of the methods or metrics "
            f"asked ({', '.join([*methods, *metrics])})",
            field=f"options.{unknown[0][:40]}",
        )
    explainers = []
    for method in dict.fromkeys(methods):
        given = options.get(method, {})
        allowed = method_parameters(method) if given and method in method_names() else {}
        typed = {
            key: coerce(f"options.{method}.{key}", value, allowed.get(key))
            for key, value in given.items()
        }
        explainers.append(plan_explainer(model, method, typed))
    chosen = tuple(_metric(name, options.get(name, {})) for name in dict.fromkeys(metrics))
    _check_task(model, chosen)
    for choice in chosen:
        _check_input_counts(model, choice)
    if not masks:
        for choice in chosen:
            if choice.needs_masks:
                raise InvalidInput(
                    f"metrics: {choice.name} needs an object mask per picture; {MASK_SOURCES}",
                    field="metrics",
                )
    return EvalPlan(tuple(explainers), chosen, seed)
