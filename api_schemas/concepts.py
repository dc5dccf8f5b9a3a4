"""Concepts of a layer: Deep Feature Factorization per request and over a dataset, and TCAV."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

ConceptFormat = StrEnum("ConceptFormat", "png npy json")


class ConceptClass(BaseModel):
    class_index: int
    label: str
    score: float = Field(description="softmax of the classifier's output for the concept vector")


class Concept(BaseModel):
    concept: int
    classes: list[ConceptClass] | None = Field(
        description="the concept's top classes, largest first; null without a usable "
        "classifier (see classes_note)"
    )
    strength: list[float] = Field(
        description="per image, the concept's mean NMF loading over the layer's positions"
    )


class ConceptResponse(BaseModel):
    model: str
    layer: str
    k: int
    batch: int
    shape: list[int] = Field(description="the npy answer's shape [B, K, H, W] (model input)")
    classifier: str | None = Field(description="the linear layer that scored the concepts")
    classes_note: str | None = Field(
        description="why the concepts have no classes, when they have none"
    )
    concepts: list[Concept]
    png_base64: str


class Exemplar(BaseModel):
    index: int
    label: str
    strength: float = Field(description="the concept's mean loading over this picture")


class DatasetConcept(BaseModel):
    concept: int
    classes: list[ConceptClass] | None
    exemplars: list[Exemplar] = Field(description="the pictures where it is strongest, first")


class DatasetConceptResponse(BaseModel):
    model: str
    dataset: str
    layer: str
    k: int
    images: int
    indices: list[int] = Field(description="the dataset pictures factorized, in order")
    classifier: str | None
    classes_note: str | None
    concepts: list[DatasetConcept]


class TcavScore(BaseModel):
    layer: str
    concept: str
    score_mean: float = Field(
        description="mean over runs of the fraction of inputs whose "
        "target logit grows along the concept's CAV"
    )
    score_std: float
    random_mean: float = Field(description="the same for CAVs of random vs random pictures")
    random_std: float
    p_value: float | None = Field(
        description="two-sided t-test (scipy's ttest_ind) of the runs' scores against the "
        "random runs' (null when both are the same constant)"
    )
    significant: bool = Field(description="p_value < alpha")
    accuracy: float = Field(description="mean held-out accuracy of the concept CAVs")


class TcavResponse(BaseModel):
    model: str
    target: int
    label: str
    random: str
    runs: int
    samples: int = Field(description="pictures per CAV side, as used")
    seed: int
    alpha: float
    inputs: int
    scores: list[TcavScore]
