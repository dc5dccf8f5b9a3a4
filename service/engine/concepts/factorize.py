"""Deep Feature Factorization (Collins et al. 2018, https://arxiv.org/abs/1806.10206) as
pytorch-grad-cam's `DeepFeatureFactorization` computes it.

The maps of every picture of a request, [B, C, h, w], are one matrix [C, B*h*w] (NaN read as
0), shifted per channel by its minimum so it is non-negative, and factorized by
scikit-learn's NMF into W [C, K] (the concepts, the shift added back) and H [K, B*h*w] (each
concept's loading at each position). The concepts are shared by the pictures of a request.
A concept's classes are the classifier applied to its vector W[:, k] (a softmax over them,
as pytorch-grad-cam's `run_dff_on_image` shows them); its heatmap is H scaled to [0, 1] per
picture and concept and resized to the model input (pytorch-grad-cam's `scale_cam_image`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from model_registry.errors import InvalidInput
from model_registry.layout import to_maps
from model_registry.registry import LoadedModel
from service.engine.capture import capture
from service.engine.checks import Bound

# pytorch-grad-cam's `dff`: random initialisation from a fixed seed; scikit-learn's other
# defaults (coordinate descent, Frobenius loss, 200 iterations, tol 1e-4).
NMF_SETTINGS = {"init": "random", "random_state": 0}
K = Bound(1, 32)
TOP = Bound(1, 20)


@dataclass(frozen=True)
class ConceptPlan:
    """A checked request: the layer, its channels, K concepts, `top` classes per concept."""

    layer: str
    calls: int
    channels: int
    k: int
    top: int


@dataclass(frozen=True)
class Factorization:
    """One NMF of maps [B, C, h, w].

    Attributes:
        concepts: float32 [C, K], W plus the per-channel shift (pytorch-grad-cam's concepts).
        loadings: float32 [B, K, h, w], H: each concept's weight at each position.
    """

    concepts: np.ndarray
    loadings: np.ndarray

    @property
    def strength(self) -> np.ndarray:
        """float32 [B, K]: each concept's mean loading over a picture's positions."""
        return self.loadings.mean(axis=(2, 3))


@dataclass(frozen=True)
class ClassScores:
    """Concept vectors through the classifier.

    Attributes:
        classifier: the name of the linear layer used.
        probabilities: float32 [K, classes], softmax of the classifier's output per concept.
    """

    classifier: str
    probabilities: np.ndarray


@dataclass(frozen=True)
class ConceptResult:
    """What one request's pictures give.

    Attributes:
        factorization: the NMF.
        heatmaps: float32 [B, K, H, W] on the model input, each in [0, 1].
        scores: the classes, or None without a usable classifier (`why` says why).
    """

    factorization: Factorization
    heatmaps: np.ndarray
    scores: ClassScores | None
    why: str | None


def plan_concepts(model: LoadedModel, *, layer: str | None, k: int, top: int) -> ConceptPlan:
    """Check the layer (a map with channels: conv maps, ViT tokens), K and top.

    Raises:
        InvalidInput: a layer without a channel map, K outside 1..min(32, channels), top
            outside 1..20.
    """
    info = model.catalog.get(layer, field="layer") if layer else model.catalog.last_spatial_layer()
    layout = info.map_layout
    if layout is None or not layout.spatial or info.calls == 0:
        raise InvalidInput(
            f"layer: '{info.name}' has no map with channels (output shape {info.output_shape}); "
            "choose a convolutional or token layer (GET /v1/models/{model}/layers)",
            field="layer",
        )
    channels = layout.shape[0]
    high = int(min(K.high, channels))
    if not K.low <= k <= high:
        raise InvalidInput(
            f"k: {k} concepts is outside 1-{high} for '{info.name}' ({channels} channels)",
            field="k",
            valid_range=[1, high],
        )
    TOP.check_int("top", top)
    return ConceptPlan(info.name, info.calls, channels, k, top)


def layer_maps(model: LoadedModel, batch: torch.Tensor, plan: ConceptPlan) -> np.ndarray:
    """float32 [B, C, h, w]: the layer's output read as maps (ViT tokens without prefix)."""
    output = capture(model.module, batch, {plan.layer: plan.calls})[plan.layer]
    layout = model.catalog.get(plan.layer).map_layout
    assert layout is not None  # checked by plan_concepts
    return to_maps(output, layout).float().cpu().numpy()


def factorize(maps: np.ndarray, k: int) -> Factorization:
    """pytorch-grad-cam's `dff` on maps [B, C, h, w] (a copy; `maps` is left as it is)."""
    batch, channels, height, width = maps.shape
    flat = np.nan_to_num(maps.transpose(1, 0, 2, 3).reshape(channels, -1), nan=0.0)
    offset = flat.min(axis=-1)
    with warnings.catch_warnings():  # 200 iterations, as the reference: not always converged
        warnings.simplefilter("ignore", ConvergenceWarning)
        nmf = NMF(n_components=k, **NMF_SETTINGS)
        w = nmf.fit_transform(flat - offset[:, None])
    h = nmf.components_.reshape(k, batch, height, width).transpose(1, 0, 2, 3)
    return Factorization(
        (w + offset[:, None]).astype(np.float32), np.ascontiguousarray(h, dtype=np.float32)
    )


def heatmaps(loadings: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Loadings [B, K, h, w] -> [B, K, H, W]: min-max per map, then bilinear to `size`."""
    low = loadings.min(axis=(2, 3), keepdims=True)
    shifted = loadings - low
    scaled = shifted / (1e-7 + shifted.max(axis=(2, 3), keepdims=True))
    resized = F.interpolate(torch.from_numpy(scaled), size=size, mode="bilinear")
    return resized.numpy().astype(np.float32)


def classifier(model: LoadedModel) -> tuple[str, nn.Linear] | None:
    """The last Linear to run in the forward pass whose outputs are the model's classes (a
    timm head's Identity or Flatten after it does not hide it), or None."""
    modules = dict(model.module.named_modules())
    for info in sorted(model.catalog, key=lambda lay: lay.order, reverse=True):
        module = modules.get(info.name)
        if not info.calls or not isinstance(module, nn.Linear):
            continue
        if module.out_features == model.spec.num_classes:
            return info.name, module
    return None


def class_scores(model: LoadedModel, concepts: np.ndarray) -> tuple[ClassScores | None, str | None]:
    """The classifier (see `classifier`) applied to each concept vector; None and the reason
    when there is none or its input width is not the layer's channel count (a layer before
    the last stage)."""
    found = classifier(model)
    if found is None:
        classes = model.spec.num_classes
        return None, f"model '{model.name}' has no Linear layer to its {classes} classes"
    name, linear = found
    if linear.in_features != concepts.shape[0]:
        return None, (
            f"the classifier '{name}' takes {linear.in_features} features, the layer has "
            f"{concepts.shape[0]} channels"
        )
    vectors = torch.from_numpy(np.ascontiguousarray(concepts.T)).to(model.device)
    with torch.inference_mode():
        logits = linear(vectors.to(linear.weight.dtype)).float()
    return ClassScores(name, logits.softmax(dim=-1).cpu().numpy()), None


def compute_concepts(model: LoadedModel, batch: torch.Tensor, plan: ConceptPlan) -> ConceptResult:
    """DFF of the batch's maps at the plan's layer (runs on the device thread)."""
    found = factorize(layer_maps(model, batch, plan), plan.k)
    scores, why = class_scores(model, found.concepts)
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    return ConceptResult(found, heatmaps(found.loadings, size), scores, why)


def top_classes(scores: ClassScores, top: int) -> list[list[tuple[int, float]]]:
    """Per concept, its `top` (class, probability) pairs, largest first, lower index on ties."""
    order = np.argsort(-scores.probabilities, axis=1, kind="stable")[:, :top]
    return [
        [(int(c), float(scores.probabilities[k, c])) for c in row] for k, row in enumerate(order)
    ]
