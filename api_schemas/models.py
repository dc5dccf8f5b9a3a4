"""Model and layer catalog bodies."""

from typing import Literal

from pydantic import BaseModel, Field

Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos"]


class Preprocessing(BaseModel):
    """How every upload is brought to `input_size` (by default as the weights were trained)."""

    resize: Literal["squash", "crop", "letterbox"] = Field(
        description="squash: stretch the whole picture; crop: scale the short side to "
        "side / crop_pct and cut the centre; letterbox: fit inside, pad with the mean colour"
    )
    crop_pct: float = Field(gt=0, le=1, description="used by crop (torchvision: 224 / 256)")
    interpolation: Interpolation = Field(
        description="the resize's resampling filter, as the weights were evaluated with"
    )


class Fitting(BaseModel):
    """What was done to one upload: the region of it that fills the model input."""

    resize: Literal["squash", "crop", "letterbox"]
    interpolation: Interpolation
    source_size: list[int] = Field(description="[height, width] of the upload")
    box: list[float] = Field(
        description="[left, top, right, bottom] in upload pixels mapped onto the whole model "
        "input; inside the picture for crop, around it (padding) for letterbox",
        examples=[[80.0, 0.0, 560.0, 427.0]],
    )


class ModelInfo(BaseModel):
    name: str = Field(examples=["resnet18"])
    architecture: str = Field(examples=["torchvision:resnet18"])
    num_classes: int
    input_size: list[int] = Field(
        description="[height, width] the model is fed at", examples=[[224, 224]]
    )
    in_channels: int = Field(description="1 (grayscale) or 3 (RGB)")
    mean: list[float]
    std: list[float]
    device: str = Field(examples=["cpu"])
    pretrained: bool = Field(description="False when the model runs with random initialisation")
    layers: int = Field(description="number of named modules in the layer catalog")
    preprocessing: Preprocessing
    task: Literal["classification", "segmentation", "detection"] = Field(
        default="classification",
        description="what the output is: class logits, per-pixel class maps, or boxes",
    )


class ModelList(BaseModel):
    data: list[ModelInfo]
    count: int


class LayerItem(BaseModel):
    name: str = Field(
        description="dotted name as in named_modules(), or `name#k` for the k-th call of a "
        "module that runs several times (listed right after the module)",
        examples=["layer3.1.conv2"],
    )
    type: str = Field(examples=["Conv2d"])
    output_shape: list[int] | None = Field(
        description="output shape without the batch dimension, from a real forward pass; "
        "null when the module does not output a single tensor",
        examples=[[256, 14, 14]],
    )
    params: int = Field(description="parameter count, submodules included")
    call: int | None = Field(
        default=None,
        description="for `name#k`: which call of a module that runs several times per forward "
        "pass (0 = first); null for a bare name, which means the module's last call",
    )
    spatial: bool = Field(
        description="true when the output reads as a [C, H, W] map with more than one position"
    )
    spatial_shape: list[int] | None = Field(
        default=None,
        description="the [C, H, W] the output is shown as by feature maps and CAMs: ViT tokens "
        "without class tokens on the patch grid, channels-last (Swin) maps channels first, "
        "vectors as [C, 1, 1]; null when it cannot be shown",
        examples=[[768, 14, 14]],
    )


class LayerList(BaseModel):
    model: str
    data: list[LayerItem]
    count: int
