"""Two models compared over a dataset: the options' enums and the answer."""

from enum import StrEnum

from pydantic import BaseModel, Field

# `models`: two names, each with a character other than a comma or a space.
TWO_NAMES = r"^[^,]*[^,\s][^,]*,[^,]*[^,\s][^,]*$"
# One layer name: no comma.
ONE_NAME = r"^[^,]+$"


class Pool(StrEnum):
    mean = "mean"
    flatten = "flatten"


class CkaMatrix(BaseModel):
    layers_a: list[str] = Field(description="the first model's layers, rows, in forward order")
    layers_b: list[str] = Field(description="the second model's layers, columns")
    matrix: list[list[float | None]] = Field(
        description="[layers_a x layers_b] linear CKA in [0, 1] (debiased: may dip below 0); "
        "null where a layer's features are constant over the pictures"
    )


class ModelAccuracy(BaseModel):
    model: str
    accuracy: float | None = Field(
        description="null when the model's labels do not match the dataset's classes"
    )


class ClassAccuracy(BaseModel):
    class_: str = Field(alias="class", description="a dataset class")
    accuracy_a: float | None
    accuracy_b: float | None
    n: int = Field(description="pictures of the class compared")


class Flip(BaseModel):
    index: int = Field(description="dataset index, as in dataset:NAME/INDEX")
    label: str = Field(description="the picture's dataset class")
    predicted_a: str
    probability_a: float
    predicted_b: str
    probability_b: float
    change: float = Field(
        description="how the order is made: the change of the true class's probability when "
        "both models' labels match the dataset, else the larger of the two probabilities"
    )


class LayerDrift(BaseModel):
    layer: str
    drift: float | None = Field(description="mean over pictures of ||a - b|| / ||a||")


class CompareDatasetResponse(BaseModel):
    models: list[str] = Field(description="[a, b]")
    dataset: str
    pool: Pool
    debiased: bool
    images: int = Field(description="pictures compared (unreadable ones left out)")
    indices: list[int] = Field(description="dataset index of each compared picture")
    cka: CkaMatrix
    accuracy: list[ModelAccuracy]
    agreement: float | None = Field(
        description="share of pictures where both predict the same class; null unless both "
        "models are classifiers"
    )
    per_class: list[ClassAccuracy]
    flips: list[Flip] = Field(description="pictures predicted differently, largest change first")
    drift: list[LayerDrift] = Field(
        description="layers named alike in layers_a and layers_b with equal output shapes"
    )
