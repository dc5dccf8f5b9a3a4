"""Prediction bodies."""

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from api_schemas.models import Fitting


class PredictionItem(BaseModel):
    class_index: int
    label: str
    probability: float = Field(ge=0, le=1)


class PredictFormat(StrEnum):
    """json for every task; png and npy for segmentation, png for detection."""

    json = "json"
    png = "png"
    npy = "npy"


class ClassShareItem(BaseModel):
    class_index: int
    label: str
    fraction: float = Field(ge=0, le=1, description="share of the input's pixels")


class SegmentationItem(BaseModel):
    """One image's class map (argmax per pixel at the model's input size)."""

    size: list[int] = Field(description="[height, width] of the class map (the input size)")
    classes: list[ClassShareItem] = Field(description="classes present, largest first")


class DetectionItem(BaseModel):
    box: list[float] = Field(
        description="[x0, y0, x1, y1] in the model input's pixels", examples=[[12, 30, 80, 96]]
    )
    source_box: list[float] = Field(
        description="the same box in the uploaded picture's pixels (see `fitting`)"
    )
    class_index: int
    label: str
    score: float


class PredictResponse(BaseModel):
    model: str
    task: Literal["classification", "segmentation", "detection"] = "classification"
    predictions: list[list[PredictionItem]] = Field(
        default_factory=list,
        description="classification: one list per image, most probable first",
    )
    segmentation: list[SegmentationItem] | None = Field(
        default=None, description="segmentation: one entry per image"
    )
    detections: list[list[DetectionItem]] | None = Field(
        default=None, description="detection: one list per image, highest score first"
    )
    fitting: list[Fitting] = Field(
        default_factory=list, description="per image, how it was brought to the input size"
    )
