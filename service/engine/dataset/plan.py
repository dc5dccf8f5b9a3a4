"""The validated plan of a dataset analysis: which pictures, layers, embedding and classes."""

from __future__ import annotations

from dataclasses import dataclass

from model_registry.datasets import Dataset, match_classes
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.dataset.pictures import sample_indices
from service.engine.insight.embedding import METHODS
from service.engine.insight.stats import plan_stats

# Values per batch of model input: 256 digits (32x32x1), 53 pictures at 224x224x3.
BATCH_VALUES = 8_000_000
MAX_BATCH = 256
# The projection runs inside the job after the last batch and has no step to stop at.
MAX_TSNE_POINTS = 10_000


@dataclass(frozen=True)
class AnalysisPlan:
    """A validated request.

    Attributes:
        dataset: the dataset's name.
        indices: the dataset indices analysed, ascending: all of them, or a sample of
            `limit` drawn with `seed`.
        layers: the layers statistics are gathered for, in forward order.
        embedding_layer: the layer whose globally average-pooled output is embedded.
        method: 'tsne' or 'pca'.
        seed: random state of the sample and the projection.
        class_map: the model output index of each dataset class, or None when the class
            names do not all match the model's labels (see `match_classes`).
        batch_size: pictures per forward pass.
    """

    dataset: str
    indices: tuple[int, ...]
    layers: tuple[str, ...]
    embedding_layer: str
    method: str
    seed: int
    class_map: tuple[int, ...] | None
    batch_size: int

    @property
    def perplexity(self) -> float:
        """scikit-learn's default of 30, capped for small sets as /embedding does."""
        return min(30.0, (len(self.indices) - 1) / 3)


def minimum_images(method: str) -> int:
    return 2 if method == "pca" else 4


def plan_analysis(
    model: LoadedModel,
    dataset: Dataset,
    *,
    layers: list[str],
    embedding_layer: str | None,
    method: str,
    limit: int | None,
    seed: int,
) -> AnalysisPlan:
    """Check every option before any picture is read.

    Raises:
        NotFound: an unknown layer (404 with the closest names).
        InvalidInput: a layer without a tensor output, an embedding layer without a spatial
            output, an unknown method, or fewer pictures than the projection needs.
    """
    if method not in METHODS:
        raise InvalidInput(
            f"method: '{method}' is not one of {', '.join(METHODS)}",
            field="method",
            choices=list(METHODS),
        )
    picked = plan_stats(model, layers)
    embedding = _embedding_layer(model, embedding_layer)
    size = len(dataset)
    count = size if limit is None else min(limit, size)
    if count < minimum_images(method):
        raise InvalidInput(
            f"limit: {method} needs at least {minimum_images(method)} pictures; dataset "
            f"'{dataset.name}' gives {count}",
            field="limit",
            minimum=minimum_images(method),
        )
    if method == "tsne" and count > MAX_TSNE_POINTS:
        raise InvalidInput(
            f"limit: t-SNE of {count} pictures would hold the device worker too long (it "
            f"cannot be cancelled midway); send limit <= {MAX_TSNE_POINTS} or method=pca",
            field="limit",
            valid_range=[minimum_images(method), MAX_TSNE_POINTS],
        )
    indices = sample_indices(size, count, seed)
    labels = [model.label(i) for i in range(model.spec.num_classes)]
    channels, height, width = _input_shape(model)
    batch = max(1, min(MAX_BATCH, BATCH_VALUES // (channels * height * width)))
    return AnalysisPlan(
        dataset=dataset.name,
        indices=indices,
        layers=picked,
        embedding_layer=embedding,
        method=method,
        seed=seed,
        class_map=match_classes(dataset.classes, labels),
        batch_size=batch,
    )


def _input_shape(model: LoadedModel) -> tuple[int, int, int]:
    height, width = model.spec.input_size
    return model.spec.in_channels, height, width


def _embedding_layer(model: LoadedModel, name: str | None) -> str:
    """The named layer, or the last one with a spatial output; pooling needs [C, H, W]."""
    if name is None:
        try:
            return model.catalog.last_spatial_layer().name
        except LookupError as exc:
            raise InvalidInput(
                f"embedding_layer: model '{model.name}' has no layer with a spatial output",
                field="embedding_layer",
            ) from exc
    info = model.catalog.get(name, field="embedding_layer")
    if not info.spatial or not info.calls:
        raise InvalidInput(
            f"embedding_layer: '{info.name}' has no spatial output to pool (output shape "
            f"{info.output_shape}); pick one with [C, H, W] output from "
            f"GET /v1/models/{model.name}/layers",
            field="embedding_layer",
        )
    return info.name
