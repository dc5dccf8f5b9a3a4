"""Run a validated plan: the maps, then metrics and the sanity check.

Results are frozen dataclasses of numpy arrays; routes map them onto schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.chunks import rows_per_chunk
from service.engine.attribution.faithfulness import deletion_insertion
from service.engine.attribution.maps import cam_maps, gradient_maps, unit_scale
from service.engine.attribution.plan import CamPlan, GradientPlan
from service.engine.attribution.sanity import randomized_copy, rank_correlation
from service.engine.attribution.target_objects import Target
from service.engine.attribution.unit_target import UnitRequest, unit_as_output
from service.engine.predict import Prediction, top_k_predictions


@dataclass(frozen=True)
class CamLayer:
    """One layer's maps.

    Attributes:
        name: the layer ('a+b' for the mean of several, see `CamPlan.aggregate_layers`).
        map_shape: its output read as [C, h, w] (the deepest one's for 'a+b').
        maps: float32 [B, T, H, W] at the model's input size, after ReLU (min-max scaled
            per map when the plan says `normalize`).
        deletion, insertion: AUCs [B, T], when asked for.
        rank_correlation: Spearman correlation [B, T] with the map of the randomized model.
    """

    name: str
    map_shape: tuple[int, int, int]
    maps: np.ndarray
    deletion: np.ndarray | None = None
    insertion: np.ndarray | None = None
    rank_correlation: np.ndarray | None = None


@dataclass(frozen=True)
class CamResult:
    method: str
    layers: tuple[CamLayer, ...]
    targets: np.ndarray  # int64 [B, T]
    several_targets: bool
    predictions: list[list[Prediction]]
    inputs: np.ndarray  # uint8 [B, H, W, 3], the de-normalized model input
    randomized: tuple[str, ...] = ()
    boxes: np.ndarray | None = None  # float32 [B, T, 4]: the boxes explained (detection)
    regions: np.ndarray | None = None  # bool [B, T, H, W]: the regions explained (segmentation)
    unit: str | None = None  # the unit explained (`unit_target`), 'layer:channel[@y,x]'


@dataclass(frozen=True)
class GradientResult:
    """Gradient maps float32 [B, T, C_in, H, W] w.r.t. the normalized input."""

    method: str
    values: np.ndarray
    targets: np.ndarray
    several_targets: bool
    predictions: list[list[Prediction]]
    inputs: np.ndarray
    randomized: tuple[str, ...] = ()
    rank_correlation: np.ndarray | None = None  # [B, T], on the channel-summed |values|
    boxes: np.ndarray | None = None
    regions: np.ndarray | None = None
    unit: str | None = None


def unit_text(request: object) -> str | None:
    """The unit a request explains, as written ('layer:channel[@y,x]'); None: a class."""
    return request.text if isinstance(request, UnitRequest) else None


def drawn_targets(target: Target) -> dict[str, np.ndarray | None]:
    """The boxes and regions a picture draws over the input (None where the target has none)."""
    boxes, regions = target.boxes_drawn(), target.regions_drawn()
    return {
        "boxes": None if boxes is None else to_numpy(boxes),
        "regions": None if regions is None else regions.cpu().numpy(),
    }


def classifier_predictions(
    model: LoadedModel, output: object, top_k: int, count: int, *, unit: bool = False
) -> list[list[Prediction]]:
    """Top-k classes of a classifier; segmentation and detection models have none here, nor
    a request that explains a unit (whose passes output the unit's layer)."""
    if unit or model.spec.task != "classification" or not isinstance(output, torch.Tensor):
        return [[] for _ in range(count)]
    return top_k_predictions(output, model, top_k)


def compute_cam(
    model: LoadedModel, batch: torch.Tensor, plan: CamPlan, *, inputs: np.ndarray
) -> CamResult:
    """CAMs of every requested layer and target, with metrics and sanity check if asked."""
    with unit_as_output(model.module, plan.targets):
        return _compute_cam(model, batch, plan, inputs=inputs)


def _compute_cam(
    model: LoadedModel, batch: torch.Tensor, plan: CamPlan, *, inputs: np.ndarray
) -> CamResult:
    cams = partial(
        cam_maps,
        eigen_smooth=plan.eigen_smooth,
        aug_smooth=plan.aug_smooth,
        aggregate_layers=plan.aggregate_layers,
        sampling=plan.sampling,
    )
    raw = cams(model, batch, plan.method, plan.layers, plan.targets)
    randomized: tuple[str, ...] = ()
    correlations: dict[str, np.ndarray] = {}
    if plan.randomize:
        copy, names = randomized_copy(model, plan.randomize)
        randomized = tuple(names)
        again = cams(copy, batch, plan.method, plan.layers, plan.targets, fixed_targets=raw.target)
        for name in raw.maps:
            correlations[name] = rank_correlation(
                to_numpy(raw.maps[name]), to_numpy(again.maps[name])
            )
    layers = []
    for name, maps in raw.maps.items():
        # 'a+b' (aggregate_layers) reports the deepest layer's shape
        map_shape = model.catalog.get(
            name if name in plan.layers else plan.layers[-1]
        ).spatial_shape
        if map_shape is None:  # check_spatial_layers refuses such layers
            raise InvalidInput(f"layer: '{name}' has no spatial output", field="layer")
        curves = None
        if plan.metrics:
            curves = deletion_insertion(
                model.module,
                batch,
                maps,
                raw.targets,
                metrics=plan.metrics,
                steps=plan.metric_steps,
                rows=rows_per_chunk(model, graph=False),
            )
        layers.append(
            CamLayer(
                name=name,
                map_shape=map_shape,
                maps=to_numpy(unit_scale(maps) if plan.normalize else maps),
                deletion=to_numpy(curves.auc["deletion"])
                if curves and "deletion" in curves.auc
                else None,
                insertion=to_numpy(curves.auc["insertion"])
                if curves and "insertion" in curves.auc
                else None,
                rank_correlation=correlations.get(name),
            )
        )
    return CamResult(
        method=plan.method,
        layers=tuple(layers),
        targets=raw.targets.cpu().numpy().astype(np.int64),
        several_targets=plan.several_targets,
        predictions=classifier_predictions(
            model, raw.logits, plan.top_k, batch.shape[0], unit=unit_text(plan.targets) is not None
        ),
        inputs=inputs,
        randomized=randomized,
        unit=unit_text(plan.targets),
        **drawn_targets(raw.target),
    )


def compute_gradients(
    model: LoadedModel, batch: torch.Tensor, plan: GradientPlan, *, inputs: np.ndarray
) -> GradientResult:
    """Gradient maps for every image and target, with the sanity check if asked."""
    with unit_as_output(model.module, plan.targets):
        logits, targets, values = gradient_maps(model, batch, plan)
    randomized: tuple[str, ...] = ()
    correlation = None
    if plan.randomize:
        copy, names = randomized_copy(model, plan.randomize)
        randomized = tuple(names)
        _, _, again = gradient_maps(copy, batch, plan, fixed_targets=targets)
        correlation = rank_correlation(
            to_numpy(values.abs().sum(dim=2)), to_numpy(again.abs().sum(dim=2))
        )
    return GradientResult(
        method=plan.method,
        values=to_numpy(values),
        targets=targets.classes.cpu().numpy().astype(np.int64),
        several_targets=plan.several_targets,
        predictions=classifier_predictions(
            model, logits, plan.top_k, batch.shape[0], unit=unit_text(plan.targets) is not None
        ),
        inputs=inputs,
        randomized=randomized,
        rank_correlation=correlation,
        unit=unit_text(plan.targets),
        **drawn_targets(targets),
    )


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A detached float32 CPU copy (a view where it already is one)."""
    return tensor.detach().float().cpu().numpy().astype(np.float32, copy=False)
