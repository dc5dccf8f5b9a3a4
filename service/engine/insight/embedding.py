"""Embeddings: many images -> one feature vector each -> 2-D points (PCA or t-SNE).

Features default to the input of the final classifier (the penultimate representation the
classes are read from); any layer can be asked for instead, spatial maps being averaged
over positions (global average pooling).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.checks import Bound
from service.engine.insight.forward import layer_tensor
from service.engine.insight.stats import as_channels_first

METHODS = ("pca", "tsne")
PERPLEXITY = Bound(0.0, 1000.0, strict_low=True)  # the route model reads it


@dataclass(frozen=True)
class EmbeddingPlan:
    """A validated request.

    Attributes:
        layer: the layer features are read at.
        take: 'input' (the default classifier's input) or 'output'.
        calls: how often the layer runs per forward pass.
        method: 'pca' or 'tsne'.
        seed: random state of the projection.
        perplexity: t-SNE perplexity (ignored by PCA).
        count: number of images.
    """

    layer: str
    take: str
    calls: int
    method: str
    seed: int
    perplexity: float
    count: int

    def describe(self) -> str:
        return f"input of {self.layer}" if self.take == "input" else self.layer


@dataclass(frozen=True)
class Embedding:
    """points: float32 [N, 2]; explained_variance: PCA's ratio per axis, None for t-SNE."""

    points: np.ndarray
    explained_variance: list[float] | None
    feature_dim: int


def final_classifier(model: LoadedModel) -> str | None:
    """The last Linear layer in forward order, or None."""
    linear = [lay for lay in model.catalog if lay.type == "Linear" and lay.calls]
    return max(linear, key=lambda lay: lay.order).name if linear else None


def plan_embedding(
    model: LoadedModel,
    *,
    layer: str | None,
    method: str,
    seed: int,
    perplexity: float | None,
    count: int,
) -> EmbeddingPlan:
    """Check the layer, method and perplexity against the number of images.

    With `perplexity=None`, t-SNE uses min(30, (count - 1) / 3), scikit-learn's default
    capped for small sets.
    """
    if method not in METHODS:
        raise InvalidInput(
            f"method: '{method}' is not one of {', '.join(METHODS)}",
            field="method",
            choices=list(METHODS),
        )
    minimum = 2 if method == "pca" else 4
    if count < minimum:
        raise InvalidInput(
            f"image: {method} needs at least {minimum} images, got {count}",
            field="image",
            minimum=minimum,
        )
    if layer is None:
        classifier = final_classifier(model)
        if classifier is not None:
            info = model.catalog.get(classifier)
            take = "input"
        else:
            info = model.catalog.last_spatial_layer()
            take = "output"
    else:
        info = model.catalog.get(layer, field="layer")
        take = "output"
        if info.output_shape is None or info.calls == 0:
            raise InvalidInput(
                f"layer: '{info.name}' has no single tensor output "
                f"(output shape {info.output_shape})",
                field="layer",
            )
    if perplexity is None:
        perplexity = min(30.0, (count - 1) / 3)
    else:
        perplexity = PERPLEXITY.check("perplexity", perplexity)
        if method == "tsne" and perplexity >= count:
            raise InvalidInput(
                f"perplexity: must be less than the number of images ({count}), got {perplexity}",
                field="perplexity",
                valid_range=[0, count],
            )
    return EmbeddingPlan(info.name, take, info.calls, method, seed, perplexity, count)


def as_vectors(values: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C] by global average pooling; anything else flattened per image."""
    if values.ndim == 4:
        return values.float().mean(dim=(2, 3))
    return values.float().reshape(values.shape[0], -1)


def extract_features(
    model: LoadedModel,
    batches: Iterable[torch.Tensor],
    plan: EmbeddingPlan,
    *,
    after_batch: Callable[[], None] | None = None,
) -> np.ndarray:
    """Feature vectors [N, D] (float32), batch by batch, in inference mode."""
    parts = []
    layout = model.catalog.get(plan.layer).map_layout
    with torch.inference_mode():
        for batch in batches:
            values = layer_tensor(model.module, batch, plan.layer, calls=plan.calls, take=plan.take)
            if plan.take == "output":
                values = as_channels_first(values, layout)
            parts.append(as_vectors(values).cpu().numpy().astype(np.float32))
            if after_batch is not None:
                after_batch()
    return np.concatenate(parts)


def project(features: np.ndarray, plan: EmbeddingPlan) -> Embedding:
    """Two coordinates per image with scikit-learn's PCA or t-SNE."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if features.shape[1] < 2:
        raise InvalidInput(
            f"layer: features at '{plan.describe()}' have {features.shape[1]} dimension(s); "
            "two are needed",
            field="layer",
        )
    if plan.method == "pca":
        pca = PCA(n_components=2, random_state=plan.seed)
        points = pca.fit_transform(features)
        ratios = [float(r) for r in pca.explained_variance_ratio_]
        return Embedding(points.astype(np.float32), ratios, features.shape[1])
    tsne = TSNE(
        n_components=2,
        perplexity=plan.perplexity,
        init="pca",
        learning_rate="auto",
        random_state=plan.seed,
    )
    points = tsne.fit_transform(features.astype(np.float64))
    return Embedding(points.astype(np.float32), None, features.shape[1])
