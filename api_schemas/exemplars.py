"""A layer's dataset exemplars: the options' enums and the answer."""

from enum import StrEnum

from pydantic import BaseModel, Field


class UnitScore(StrEnum):
    max = "max"
    mean = "mean"


class ExemplarFormat(StrEnum):
    json = "json"
    png = "png"


class Exemplar(BaseModel):
    index: int = Field(description="the picture's dataset index (image=dataset:NAME/INDEX)")
    label: str = Field(description="the picture's class in the dataset")
    value: float = Field(description="the channel's score on the picture (its spatial max or mean)")
    position: list[int] = Field(description="[y, x] of the maximum in the layer's map")
    box: list[int] = Field(
        description="[x0, y0, x1, y1]: that position's receptive field in model-input pixels, "
        "clipped to the input; x1 and y1 exclusive (docs/units.md)"
    )


class UnitExemplars(BaseModel):
    channel: int
    top: list[Exemplar] = Field(description="largest score first; equal scores by lower index")


class ExemplarsResponse(BaseModel):
    layer: str
    score: UnitScore
    images: int = Field(description="pictures read (unreadable ones are skipped)")
    units: list[UnitExemplars] = Field(description="the selected channels, in the order asked")
