"""Explanations evaluated: the answers of /evaluate and of the dataset evaluation job."""

from enum import StrEnum

from pydantic import BaseModel, Field


class EvaluationTarget(StrEnum):
    predicted = "predicted"
    label = "label"


class Cascade(BaseModel):
    """The `randomization` metric's detail (Quantus MPRT, cascading top-down)."""

    layers: list[str] = Field(
        description="the randomized layers, top first: at depth d the first d are randomized"
    )
    threshold: float = Field(description="decorrelation_threshold: the similarity below which")
    similarity: list[list[float | None]] = Field(
        description="per image, the rank correlation of its map with the map at each depth "
        "1..len(layers) (null: a constant map)"
    )
    decorrelated_at: list[int | None] = Field(
        description="per image, the first depth whose similarity is below threshold (null: none is)"
    )


class DatasetCascade(Cascade):
    mean_similarity: list[float | None] = Field(
        description="per depth, the mean similarity over the images with one"
    )


class MethodValues(BaseModel):
    method: str
    parameters: dict[str, object] = Field(description="the method's parameters as used")
    metrics: dict[str, list[float | None]] = Field(
        description="per metric one value per image (null: none, e.g. a constant map)"
    )
    randomization: Cascade | None = Field(
        None, description="with the randomization metric: its similarity per depth per image"
    )


class EvaluationResponse(BaseModel):
    model: str
    images: int
    targets: list[int] = Field(description="the class explained in each image")
    metrics: dict[str, dict[str, object]] = Field(
        description="per metric: reference, higher_is_better and the parameters used"
    )
    methods: list[MethodValues]


class MetricSummary(BaseModel):
    mean: float | None
    std: float | None = Field(description="sample standard deviation (ddof 1)")
    ci95: list[float] | None = Field(
        description="[low, high]: percentile bootstrap of the mean, 1000 resamples seeded by `seed`"
    )
    n: int = Field(description="pictures with a value")
    best: list[int] = Field(description="dataset indices of the best pictures, best first")
    worst: list[int] = Field(description="dataset indices of the worst pictures, worst first")


class MethodSummary(BaseModel):
    method: str
    parameters: dict[str, object]
    mean_rank: float | None = Field(description="mean over metrics of the rank (1 = best)")
    metrics: dict[str, MetricSummary]
    randomization: DatasetCascade | None = Field(
        None,
        description="with the randomization metric: per image (in `indices` order) its "
        "similarity per depth and first decorrelated depth, and the mean per depth",
    )


class MetricRanking(BaseModel):
    metric: str
    higher_is_better: bool
    reference: str
    methods: list[str] = Field(description="best first")


class DatasetEvaluationResponse(BaseModel):
    model: str
    dataset: str
    target: EvaluationTarget
    seed: int
    resamples: int = Field(description="bootstrap resamples per interval")
    images: int = Field(description="pictures evaluated")
    indices: list[int]
    skipped: list[int] = Field(description="pictures that could not be read")
    without_mask: int = Field(
        description="pictures read without a usable mask (left out of localisation metrics)"
    )
    methods: list[MethodSummary]
    rankings: list[MetricRanking]
    overall: list[str] = Field(description="methods by mean rank, best first")
