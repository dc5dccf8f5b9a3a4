"""Attribution options (CAM and gradient methods, baselines, views) and the JSON answers."""

import re
from enum import StrEnum
from typing import cast

from pydantic import BaseModel, Field

from api_schemas.models import Fitting
from api_schemas.predictions import PredictionItem


def member_name(value: str) -> str:
    """An identifier for an enum value: `gradcam++` -> `gradcam_plus_plus`, so it cannot
    collide with `gradcam` (the OpenAPI document gives it as `x-enum-varnames`)."""
    name = re.sub(r"\W", "_", value.replace("+", "_plus"))
    return name if name[:1].isalpha() else f"value_{name}"


def method_enum(name: str, methods: list[str]) -> type[StrEnum]:
    """An enum of method names, built from the service's method registry."""
    members = [(member_name(method), method) for method in methods]
    return cast(type[StrEnum], StrEnum(name, members))


class MethodInfo(BaseModel):
    name: str = Field(description="the value of the endpoint's `method` parameter")
    kind: str = Field(description="cam (POST /v1/models/{model}/cam) or gradients")
    needs_gradients: bool = Field(description="whether it runs a backward pass")
    summary: str


class MethodList(BaseModel):
    data: list[MethodInfo]
    count: int


Baseline = StrEnum("Baseline", "zero black blur")
CamUpsample = StrEnum("CamUpsample", "nearest bilinear")
GradientView = StrEnum("GradientView", "heatmap gradient positive negative")
Canvas = StrEnum("Canvas", "upload input")


class TargetItem(BaseModel):
    class_index: int
    label: str
    box: list[float] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="detection: the box explained, [x0, y0, x1, y1] in the model input's pixels",
    )
    pixels: int | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="segmentation: how many pixels the region explained has",
    )
    unit: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="unit=: the unit explained, 'layer:channel' or 'layer:channel@y,x' "
        "(class_index is then its channel)",
    )


class CamLayerItem(BaseModel):
    name: str
    map_shape: list[int] = Field(
        description="the layer's output read as [C, h, w] (what the CAM weighs)"
    )
    shape: list[int] = Field(
        description="shape of this layer's npy array: [B, H, W], or [B, T, H, W] for several "
        "targets"
    )


class CamMapItem(BaseModel):
    layer: str
    image: int
    target: int
    label: str
    min: float = Field(description="minimum of the returned map (after ReLU)")
    max: float
    deletion: float | None = Field(
        default=None, description="deletion AUC (lower is more faithful)"
    )
    insertion: float | None = Field(
        default=None, description="insertion AUC (higher is more faithful)"
    )
    rank_correlation: float | None = Field(
        default=None,
        description="Spearman correlation with the map after re-initializing the top layers "
        "(randomize=N); null when not asked or a map is constant",
    )


class _Attribution(BaseModel):
    """What every attribution answer starts with: the model, method and batch."""

    model: str
    method: str
    batch: int
    input_size: list[int]
    fitting: list[Fitting] = Field(
        default_factory=list, description="per image, how it was brought to the input size"
    )


class CamResponse(_Attribution):
    method: str = Field(description="a CAM method from GET /v1/methods")
    layers: list[CamLayerItem]
    targets: list[list[TargetItem]] = Field(
        description="per image, the classes explained, in map order"
    )
    predictions: list[list[PredictionItem]] = Field(description="per image, the top-k classes")
    maps: list[CamMapItem] = Field(description="one entry per layer, image and target")
    randomized_layers: list[str] = Field(
        default_factory=list, description="layers re-initialized for the sanity check, top first"
    )
    png_base64: str = Field(description="the same picture as format=png, base64-encoded")


class GradientMapItem(BaseModel):
    image: int
    target: int
    label: str
    min: float
    max: float
    rank_correlation: float | None = Field(
        default=None,
        description="Spearman correlation of the channel-summed |map| with the one after "
        "re-initializing the top layers (randomize=N)",
    )


class GradientResponse(_Attribution):
    method: str = Field(description="a gradient method from GET /v1/methods")
    shape: list[int] = Field(
        description="shape of the npy array: [B, C, H, W], or [B, T, C, H, W] for several targets"
    )
    targets: list[list[TargetItem]]
    predictions: list[list[PredictionItem]]
    maps: list[GradientMapItem]
    randomized_layers: list[str] = Field(default_factory=list)
    png_base64: str
