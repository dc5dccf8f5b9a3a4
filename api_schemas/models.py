"""Model and layer catalog bodies."""

from pydantic import BaseModel, Field


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


class ModelList(BaseModel):
    data: list[ModelInfo]
    count: int


class LayerItem(BaseModel):
    name: str = Field(description="dotted name as in named_modules()", examples=["layer3.1.conv2"])
    type: str = Field(examples=["Conv2d"])
    output_shape: list[int] | None = Field(
        description="output shape without the batch dimension, from a real forward pass; "
        "null when the module does not output a single tensor",
        examples=[[256, 14, 14]],
    )
    params: int = Field(description="parameter count, submodules included")
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
