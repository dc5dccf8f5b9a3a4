"""Attribution options (CAM and gradient methods, baselines, views) and the JSON answers."""

from enum import StrEnum

from pydantic import BaseModel, Field

from api_schemas.models import Fitting
from api_schemas.predictions import PredictionItem


class CamMethod(StrEnum):
    gradcam = "gradcam"
    gradcam_pp = "gradcam++"
    xgradcam = "xgradcam"
    layercam = "layercam"
    hirescam = "hirescam"
    cam = "cam"
    scorecam = "scorecam"
    eigencam = "eigencam"
    ablationcam = "ablationcam"


class GradientMethod(StrEnum):
    vanilla = "vanilla"
    guided_backprop = "guided-backprop"
    deconvnet = "deconvnet"
    guided_gradcam = "guided-gradcam"
    input_x_gradient = "input-x-gradient"
    integrated_gradients = "integrated-gradients"
    smoothgrad = "smoothgrad"


class Baseline(StrEnum):
    zero = "zero"
    black = "black"
    blur = "blur"


class CamUpsample(StrEnum):
    nearest = "nearest"
    bilinear = "bilinear"


class GradientView(StrEnum):
    heatmap = "heatmap"
    gradient = "gradient"
    positive = "positive"
    negative = "negative"


class TargetItem(BaseModel):
    class_index: int
    label: str


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


class CamResponse(BaseModel):
    model: str
    method: CamMethod
    batch: int
    input_size: list[int]
    fitting: list[Fitting] = Field(
        default_factory=list, description="per image, how it was brought to the input size"
    )
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


class GradientResponse(BaseModel):
    model: str
    method: GradientMethod
    batch: int
    input_size: list[int]
    fitting: list[Fitting] = Field(
        default_factory=list, description="per image, how it was brought to the input size"
    )
    shape: list[int] = Field(
        description="shape of the npy array: [B, C, H, W], or [B, T, C, H, W] for several targets"
    )
    targets: list[list[TargetItem]]
    predictions: list[list[PredictionItem]]
    maps: list[GradientMapItem]
    randomized_layers: list[str] = Field(default_factory=list)
    png_base64: str
