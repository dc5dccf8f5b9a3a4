"""Model insight options and answers: filters, maximization, inversion, statistics, embeddings."""

from enum import StrEnum

from pydantic import BaseModel, Field

FilterFormat = StrEnum("FilterFormat", "png npy")
FilterView = StrEnum("FilterView", "auto rgb mean inputs")
ImageFormat = StrEnum("ImageFormat", "png npy json")
StatsFormat = StrEnum("StatsFormat", "json png")
EmbeddingMethod = StrEnum("EmbeddingMethod", "pca tsne")
EmbeddingFormat = StrEnum("EmbeddingFormat", "json png")


class MaximizeResponse(BaseModel):
    model: str
    layer: str
    target: str = Field(examples=["channel 5"], description="what was maximized")
    channel: int | None
    neuron: list[int] | None = Field(description="[x, y] in the layer's map, or null for the mean")
    direction: bool = Field(description="true when a direction over channels was maximized")
    steps: int
    lr: float
    size: list[int] = Field(description="[height, width] of the optimized image")
    seed: int
    tv: float
    activation: float = Field(description="the objective for the final image, untransformed")
    noise_activation: float = Field(
        description="the objective for uniform noise (mean of 8 images)"
    )
    curve: list[float] = Field(description="the objective at every step, on the transformed image")
    png_base64: str = Field(description="the image as format=png gives it, base64-encoded")


class InvertResponse(BaseModel):
    model: str
    layer: str
    steps: int
    lr: float
    seed: int
    tv: float
    beta: float
    norm: float
    alpha: float
    loss: list[float] = Field(description="the full objective at every step")
    distance: list[float] = Field(
        description="relative feature distance ||phi(x) - phi(x0)|| / ||phi(x0)||: start, every "
        "step, final (steps + 1 values)"
    )
    distance_drop: float = Field(description="1 - final distance / starting distance")
    png_base64: str = Field(description="the reconstruction as format=png gives it, base64-encoded")


class Histogram(BaseModel):
    edges: list[float] = Field(description="bin edges, one more than counts")
    counts: list[int]


class LayerStatsBody(BaseModel):
    name: str
    type: str
    depth: int = Field(description="position of the layer's first call in the forward pass")
    shape: list[int] = Field(description="output shape without the batch dimension")
    sparsity: float = Field(ge=0, le=1, description="fraction of activations <= 0")
    mean: float
    std: float
    max: float
    dead_fraction: float | None = Field(
        ge=0,
        le=1,
        description="fraction of channels never > 0 for these images; null unless the layer is "
        "a ReLU-like nonlinearity or its output is never negative (where it means nothing)",
    )
    channel_means: list[float] = Field(description="mean activation of each channel")
    histogram: Histogram = Field(description="every activation of these images, in 32 bins")


class StatsResponse(BaseModel):
    model: str
    images: int
    layers: list[LayerStatsBody]


class EmbeddingResponse(BaseModel):
    model: str
    layer: str = Field(examples=["input of fc"], description="where the features were read")
    feature_dim: int
    method: EmbeddingMethod
    count: int
    seed: int
    perplexity: float | None = Field(description="t-SNE perplexity used; null for PCA")
    points: list[list[float]] = Field(description="one [x, y] per image, in upload order")
    explained_variance: list[float] | None = Field(
        description="PCA: fraction of the variance along each axis; null for t-SNE"
    )
    labels: list[str] | None
