"""Channel contributions: answers of /contributions and of its dataset job."""

from enum import StrEnum

from pydantic import BaseModel, Field

from api_schemas.attributions import TargetItem

ContributionFormat = StrEnum("ContributionFormat", "json npy")


class ChannelContribution(BaseModel):
    channel: int
    contribution: float


class ContributionItem(BaseModel):
    image: int = Field(description="index of the image in the request")
    target: TargetItem = Field(description="what is explained")
    total: float = Field(description="the sum over every channel of the layer")
    channels: list[ChannelContribution] = Field(
        description="the `top` channels of largest contribution, largest first"
    )


class ContributionsResponse(BaseModel):
    model: str
    layer: str
    method: str
    steps: int | None = Field(description="conductance: path steps (Captum's n_steps)")
    baseline: str | None = Field(description="conductance: the path's start")
    channel_count: int = Field(description="channels of the layer")
    shape: list[int] = Field(description="the npy answer's shape: [B, C], [B, T, C] for several")
    channels: list[ChannelContribution] = Field(
        description="the first image's first target's channels (= items[0].channels)"
    )
    items: list[ContributionItem] = Field(description="one per image and target, image-major")


class ClassContributions(BaseModel):
    class_index: int
    label: str
    images: int = Field(description="images of this class in the set (their mean is the row)")
    channels: list[ChannelContribution] = Field(
        description="the `top` channels of largest mean contribution, largest first"
    )


class DatasetContributionsResponse(BaseModel):
    model: str
    dataset: str
    layer: str
    method: str
    images: int
    classes: list[ClassContributions]
    matrix: list[list[float | None]] = Field(
        description="[classes, channels]: row k is the mean contribution of each channel to "
        "class k over the images labelled k; null where the set has no image of class k"
    )
