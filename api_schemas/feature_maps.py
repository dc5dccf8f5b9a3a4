"""Feature-map options and the JSON answer."""

from enum import StrEnum

from pydantic import BaseModel, Field

from api_schemas.models import Fitting

Reduce = StrEnum("Reduce", "none pca mean sum max")
OutputFormat = StrEnum("OutputFormat", "png npy json")
Scale = StrEnum("Scale", "channel shared")


class LayerMapsInfo(BaseModel):
    name: str
    layer_shape: list[int] = Field(description="the layer's output as [C, H, W]")
    shape: list[int] = Field(description="shape of the returned array for this layer, [B, k, H, W]")
    channels: list[list[int]] = Field(
        description="per image, the channels selected (reduced ones too)"
    )
    min: list[list[float]] = Field(description="per image, the minimum of each returned map")
    max: list[list[float]] = Field(description="per image, the maximum of each returned map")


class FeatureMapResponse(BaseModel):
    model: str
    reduce: Reduce
    batch: int
    input_size: list[int]
    layers: list[LayerMapsInfo]
    png_base64: str = Field(description="the same panel as format=png, base64-encoded")
    fitting: list[Fitting] = Field(
        default_factory=list, description="per image, how it was brought to the input size"
    )
