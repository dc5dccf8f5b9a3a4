"""`POST /v1/models/{model}/attributions`: its parameter types and its JSON answer."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from api_schemas.attributions import GradientMapItem, GradientResponse, MethodInfo

PerturbationBaseline = StrEnum("PerturbationBaseline", "zero black blur mean")


class InputMapItem(GradientMapItem):
    deletion: float | None = Field(
        default=None, description="deletion AUC of the channel-summed |map| (metrics=)"
    )
    insertion: float | None = Field(
        default=None, description="insertion AUC of the channel-summed |map| (metrics=)"
    )


class InputAttributionResponse(GradientResponse):
    method: str = Field(description="an input-space method from GET /v1/methods")
    maps: list[InputMapItem]  # type: ignore[assignment]
    parameters: dict[str, Any] = Field(
        description="every parameter of the method as used, defaults filled in"
    )
    mask: list[list[list[int]]] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="mask-based methods: per image, the feature id of every pixel [H][W]",
    )


class MethodDetails(MethodInfo):
    family: str = Field(description="cam, gradient, perturbation or propagation")
    endpoints: list[str] = Field(
        description="the endpoints that serve it (cam, gradients, attributions)"
    )
    parameters: dict[str, Any] = Field(
        description="the method's own parameters with their defaults (null: chosen per "
        "request, as a CAM's layer)"
    )
    uses_layer: bool = Field(
        description="whether it reads a layer (`layer`); false: it reads the input or the "
        "whole model (fullgrad: every bias) and refuses `layer`"
    )
    unit: bool = Field(
        True,
        description="whether it explains a unit (`unit=L:K[@y,x]`) instead of a class; "
        "false: a 422 saying `unit_refused`",
    )
    unit_refused: str | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="why the method cannot explain a unit",
    )


class MetricDetails(BaseModel):
    name: str = Field(description="the name `metrics=` takes on the /evaluate endpoints")
    family: str = Field(
        description="faithfulness, robustness, complexity, localisation or randomisation"
    )
    reference: str = Field(description="the implementation whose definition it matches")
    higher_is_better: bool = Field(description="the direction of a better explanation")
    needs: list[str] = Field(
        description="what it reads beyond images and maps: masks, explain, explain_randomized"
    )
    summary: str
    parameters: dict[str, Any] = Field(
        description="its own parameters (options.<metric>.<name>) with their defaults"
    )


class MethodDetailsList(BaseModel):
    data: list[MethodDetails]
    count: int
    metrics: list[MetricDetails] = Field(
        default_factory=list,
        description="the evaluation metrics of /evaluate, by family (docs/evaluation.md)",
    )
