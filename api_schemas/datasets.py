"""Datasets and the answer of a dataset analysis."""

from pydantic import BaseModel, Field

from api_schemas.insight import EmbeddingMethod


class DatasetInfo(BaseModel):
    name: str
    size: int = Field(description="number of pictures (unreadable files included)")
    classes: list[str] = Field(description="class names; a picture's label indexes this list")


class DatasetList(BaseModel):
    data: list[DatasetInfo]


class ActivationHistogram(BaseModel):
    edges: list[float] = Field(description="bin edges, one more than counts")
    counts: list[int] = Field(description="add up to every value of the layer over the set")
    clamped: list[int] = Field(
        description="[below, above]: values outside the edges (fixed by the first batch), "
        "counted into the first and last bin"
    )


class LayerAnalysis(BaseModel):
    name: str
    type: str
    shape: list[int] = Field(description="output shape per image, channels first")
    values: int = Field(description="values seen: the shape's size times the images")
    dead_fraction: float | None = Field(
        description="channels <= 0 at every position of every image; null unless the layer "
        "is ReLU-like or never negative"
    )
    dead_channels: list[int]
    sparsity: float = Field(description="fraction of values <= 0")
    mean: float
    std: float
    min: float
    max: float
    histogram: ActivationHistogram


class Mistake(BaseModel):
    index: int = Field(description="the picture's dataset index (image=dataset:NAME/INDEX)")
    label: int = Field(description="true class, an index into classes")
    predicted: int = Field(description="predicted class, an index into classes")
    probability: float = Field(description="the model's softmax probability of predicted")


class SkippedPicture(BaseModel):
    index: int
    reason: str


class DatasetEmbedding(BaseModel):
    layer: str = Field(description="its output, globally average-pooled, is projected")
    method: EmbeddingMethod
    feature_dim: int
    seed: int
    points: list[list[float]] = Field(description="[x, y] per analysed picture")
    labels: list[int]
    predicted: list[int] | None


class DatasetAnalysisResponse(BaseModel):
    model: str
    dataset: str
    classes: list[str]
    images: int = Field(description="pictures analysed (skipped ones not counted)")
    indices: list[int] = Field(description="dataset index of each analysed picture")
    labels: list[int] = Field(description="true class of each analysed picture")
    predicted: list[int] | None = Field(
        description="predicted class of each picture; null when the class names do not map "
        "to the model's labels"
    )
    skipped: list[SkippedPicture] = Field(description="files that could not be read or decoded")
    accuracy: float | None
    confusion: list[list[int]] | None = Field(
        description="[classes x classes] counts, rows true, columns predicted"
    )
    misclassified: list[Mistake] | None = Field(description="most confident first")
    layers: list[LayerAnalysis]
    embedding: DatasetEmbedding
