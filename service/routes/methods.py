"""The attribution methods the service offers, read from the method registry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api_schemas.input_attributions import MethodDetails, MethodDetailsList, MetricDetails
from service.engine.attribution.input_attributions import method_entries
from service.engine.attribution.methods.input_base import GRADIENT_FAMILY, INPUT_KIND
from service.engine.attribution.methods.registry import (
    CAM_KIND,
    GRADIENT_KIND,
    CamMethod,
    cam_methods,
)
from service.engine.attribution.unit_target import NO_UNIT
from service.engine.evaluation.metrics.registry import get_metric, metric_names

router = APIRouter(prefix="/v1/methods", tags=["attributions"])


def _cam_parameters(method: CamMethod) -> dict[str, Any]:
    """`layer` (null: the last spatial layer by default) where the method reads one, and
    the sampled CAMs' `samples`, `noise` and `seed` with their torchcam defaults."""
    defaults = {
        "samples": getattr(method, "default_samples", None),
        "noise": getattr(method, "default_noise", None),
        "seed": 0,
    }
    listed: dict[str, Any] = {"layer": None} if method.uses_layer else {}
    return listed | {name: value for name, value in defaults.items() if name in method.parameters}


def _unit(name: str) -> dict[str, Any]:
    """Whether a method explains `unit=`, and why not (`unit_target.NO_UNIT`)."""
    return {"unit": name not in NO_UNIT, "unit_refused": NO_UNIT.get(name)}


@router.get("", response_model=MethodDetailsList)
async def list_methods() -> MethodDetailsList:
    """Every method: its family, the endpoints that serve it, its parameters and defaults;
    and every evaluation metric, its family, reference and direction."""
    data = [
        MethodDetails(
            name=m.name,
            kind=CAM_KIND,
            family=CAM_KIND,
            endpoints=[CAM_KIND],
            needs_gradients=m.needs_gradients,
            summary=m.summary,
            parameters=_cam_parameters(m),
            uses_layer=m.uses_layer,
            **_unit(m.name),
        )
        for m in cam_methods()
    ]
    for entry in method_entries():
        gradient = entry.family == GRADIENT_FAMILY
        data.append(
            MethodDetails(
                name=entry.name,
                kind=GRADIENT_KIND if gradient else INPUT_KIND,
                family=entry.family,
                endpoints=[GRADIENT_KIND, INPUT_KIND] if gradient else [INPUT_KIND],
                needs_gradients=entry.needs_gradients,
                summary=entry.summary,
                parameters=entry.parameters,
                uses_layer="layer" in entry.parameters,
                **_unit(entry.name),
            )
        )
    return MethodDetailsList(data=data, count=len(data), metrics=_metrics())


def _metrics() -> list[MetricDetails]:
    """Every evaluation metric of the registry, by family then name."""
    listed = []
    for name in metric_names():
        metric = get_metric(name)
        listed.append(
            MetricDetails(
                name=name,
                family=metric.family,
                reference=metric.reference,
                higher_is_better=metric.higher_is_better,
                needs=sorted(metric.needs),
                summary=metric.summary,
                parameters=metric.defaults(),
            )
        )
    return listed
