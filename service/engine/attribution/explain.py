"""Run a validated plan: CAMs per layer and target, gradient maps, metrics, sanity check.

Results are frozen dataclasses of numpy arrays; routes map them onto schemas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model_registry.errors import InvalidInput
from model_registry.layout import to_maps
from model_registry.registry import LoadedModel
from service.engine.attribution import cam as cams
from service.engine.attribution import gradients as grads
from service.engine.attribution.baselines import baseline
from service.engine.attribution.chunks import DEFAULT_MEMORY_BUDGET, rows_per_chunk
from service.engine.attribution.faithfulness import deletion_insertion
from service.engine.attribution.graph import forward_to_layers, score_gradients
from service.engine.attribution.guided import DECONV, GUIDED
from service.engine.attribution.perturb import ablation_cam_weights, score_cam_weights
from service.engine.attribution.plan import BILINEAR, NEAREST, CamPlan, GradientPlan, classifier
from service.engine.attribution.sanity import randomized_copy, rank_correlation
from service.engine.attribution.targets import resolve_targets
from service.engine.predict import Prediction, top_k_predictions


@dataclass(frozen=True)
class RawCams:
    """Tensors of one CAM run: logits [B, classes], targets [B, T], maps per layer [B, T, H, W]."""

    logits: torch.Tensor
    targets: torch.Tensor
    maps: dict[str, torch.Tensor]


@dataclass(frozen=True)
class CamLayer:
    """One layer's maps.

    Attributes:
        name: the layer.
        map_shape: its output read as [C, h, w].
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


def _to_input_size(raw: torch.Tensor, size: tuple[int, int], mode: str = BILINEAR) -> torch.Tensor:
    """ReLU, then upsampling: bilinear with half-pixel centres (as cv2.resize in
    pytorch-grad-cam), or nearest (as Captum's LayerAttribution.interpolate)."""
    if mode == NEAREST:
        return F.interpolate(raw.clamp(min=0), size=size, mode="nearest")
    return F.interpolate(raw.clamp(min=0), size=size, mode="bilinear", align_corners=False)


def unit_scale(maps: torch.Tensor) -> torch.Tensor:
    """Per map [..., H, W]: (m - min) / (max(m - min) + 1e-7), as pytorch-grad-cam scales."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    shifted = maps - low
    return shifted / (shifted.amax(dim=(-2, -1), keepdim=True) + 1e-7)


def _check_global_pooling(
    model: LoadedModel, name: str, acts: torch.Tensor, logits: torch.Tensor
) -> torch.Tensor:
    """The classifier weights, after checking logits == linear(mean of the maps)."""
    found = classifier(model)
    if found is None:  # plan_cam refuses such models; checked again for the type checker
        raise InvalidInput(
            "layer: method=cam needs a model ending in a linear classifier", field="layer"
        )
    _, linear = found
    pooled = F.linear(
        acts.mean(dim=(2, 3)),
        linear.weight.to(acts.dtype),
        None if linear.bias is None else linear.bias.to(acts.dtype),
    )
    scale = float(logits.abs().max()) + 1e-6
    if not torch.allclose(pooled, logits.to(acts.dtype), rtol=1e-3, atol=1e-4 * scale):
        raise InvalidInput(
            f"layer: method=cam needs '{name}' to reach the classifier through global average "
            "pooling only; "
            "it does not here. Use method=gradcam",
            field="layer",
        )
    return linear.weight


def cam_maps(
    model: LoadedModel,
    batch: torch.Tensor,
    method: str,
    layers: tuple[str, ...],
    requested: tuple[int, ...],
    *,
    fixed_targets: torch.Tensor | None = None,
    budget: int = DEFAULT_MEMORY_BUDGET,
    upsample: str = BILINEAR,
) -> RawCams:
    """One forward pass for every layer and target, then each method's own work.

    Args:
        batch: preprocessed inputs [B, C, H, W] on the model's device.
        layers: validated spatial layers in forward order.
        requested: target classes (for every image); () = top-1 per image.
        fixed_targets: [B, T] overriding `requested` (the sanity check reuses the original's).
    """
    catalog = model.catalog
    infos = {name: catalog.get(name) for name in layers}
    size = (batch.shape[-2], batch.shape[-1])
    gradient = method in cams.GRADIENT_METHODS
    run = forward_to_layers(
        model.module, batch, {n: i.calls for n, i in infos.items()}, grad=gradient
    )
    logits = run.logits.detach()
    targets = fixed_targets if fixed_targets is not None else resolve_targets(logits, requested)
    count, per_image = targets.shape
    if gradient:
        layer_grads = dict(
            zip(
                layers,
                score_gradients(run.logits, targets, [run.activations[n] for n in layers]),
                strict=True,
            )
        )
    maps: dict[str, torch.Tensor] = {}
    for name in layers:
        layout = infos[name].map_layout
        if layout is None:  # check_spatial_layers refuses such layers
            raise InvalidInput(f"layer: '{name}' has no spatial output", field="layer")
        output = run.activations[name].detach()
        acts = to_maps(output, layout).float()
        if gradient:
            flat = layer_grads[name].flatten(0, 1)
            grads_maps = to_maps(flat, layout).unflatten(0, (count, per_image)).float()
            raw = cams.gradient_cam(method, acts, grads_maps)
        elif method == cams.CAM:
            weight = _check_global_pooling(model, name, acts, logits.float())
            raw = cams.class_activation_map(acts, weight, targets)
        elif method == cams.EIGENCAM:
            raw = cams.eigen_cam(acts)[:, None].expand(count, per_image, -1, -1)
        elif method == cams.SCORECAM:
            rows = rows_per_chunk(model, graph=False, budget=budget)
            weights = score_cam_weights(model.module, batch, acts, targets, rows=rows)
            raw = cams.weighted_sum(weights, acts)
        elif method == cams.ABLATIONCAM:
            rows = rows_per_chunk(model, graph=False, budget=budget)
            weights = ablation_cam_weights(
                model.module,
                batch,
                layer=name,
                calls=infos[name].calls,
                output=output,
                layout=layout,
                targets=targets,
                base_scores=logits.gather(1, targets),
                rows=rows,
            )
            raw = cams.weighted_sum(weights, acts)
        else:
            raise ValueError(f"unknown CAM method {method!r}")
        maps[name] = _to_input_size(raw, size, upsample)
    return RawCams(logits, targets, maps)


def compute_cam(
    model: LoadedModel, batch: torch.Tensor, plan: CamPlan, *, inputs: np.ndarray
) -> CamResult:
    """CAMs of every requested layer and target, with metrics and sanity check if asked."""
    raw = cam_maps(model, batch, plan.method, plan.layers, plan.targets)
    randomized: tuple[str, ...] = ()
    correlations: dict[str, np.ndarray] = {}
    if plan.randomize:
        copy, names = randomized_copy(model, plan.randomize)
        randomized = tuple(names)
        again = cam_maps(
            copy, batch, plan.method, plan.layers, plan.targets, fixed_targets=raw.targets
        )
        for name in plan.layers:
            correlations[name] = rank_correlation(_numpy(raw.maps[name]), _numpy(again.maps[name]))
    layers = []
    for name in plan.layers:
        maps = raw.maps[name]
        map_shape = model.catalog.get(name).spatial_shape
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
                maps=_numpy(unit_scale(maps) if plan.normalize else maps),
                deletion=_numpy(curves.auc["deletion"])
                if curves and "deletion" in curves.auc
                else None,
                insertion=_numpy(curves.auc["insertion"])
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
        predictions=top_k_predictions(raw.logits, model, plan.top_k),
        inputs=inputs,
        randomized=randomized,
    )


def gradient_maps(
    model: LoadedModel,
    batch: torch.Tensor,
    plan: GradientPlan,
    *,
    fixed_targets: torch.Tensor | None = None,
    budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits [B, classes], targets [B, T], gradient maps [B, T, C, H, W]) for one plan."""
    module = model.module
    rows = rows_per_chunk(model, graph=True, budget=budget)

    def choose(logits: torch.Tensor, part: slice) -> torch.Tensor:
        if fixed_targets is not None:
            return fixed_targets[part]
        return resolve_targets(logits, plan.targets)

    method = plan.method
    if method in (grads.VANILLA, grads.INPUT_X_GRADIENT, grads.GUIDED_BACKPROP, grads.DECONVNET):
        relu_mode = {grads.GUIDED_BACKPROP: GUIDED, grads.DECONVNET: DECONV}.get(method)
        logits, targets, values = grads.gradients_with_logits(
            module, batch, choose, rows=rows, relu_mode=relu_mode
        )
        if method == grads.INPUT_X_GRADIENT:
            values = batch[:, None] * values
        return logits, targets, values
    if method == grads.GUIDED_GRADCAM:
        # Guided backprop times the Grad-CAM map (Selvaraju et al. 2017, sec. 3.1): its ReLU'd
        # values upsampled nearest, as Captum's GuidedGradCam, or bilinearly and scaled to
        # [0, 1], as the paper's figures and pytorch-grad-cam's example.
        layer = plan.layer or model.catalog.last_spatial_layer().name  # plan_gradients sets it
        cam = cam_maps(
            model,
            batch,
            cams.GRADCAM,
            (layer,),
            plan.targets,
            fixed_targets=fixed_targets,
            budget=budget,
            upsample=plan.upsample,
        )
        _, _, guided = grads.gradients_with_logits(
            module, batch, lambda _logits, part: cam.targets[part], rows=rows, relu_mode=GUIDED
        )
        mask = cam.maps[layer] if plan.upsample == NEAREST else unit_scale(cam.maps[layer])
        return cam.logits, cam.targets, guided * mask[:, :, None]
    with torch.no_grad():  # not inference mode: the targets index gradient passes below
        logits = module(batch)
    targets = fixed_targets if fixed_targets is not None else resolve_targets(logits, plan.targets)
    if method == grads.INTEGRATED_GRADIENTS:
        start = baseline(batch, plan.baseline, model.spec)
        values = grads.integrated_gradients(
            module, batch, targets, start, steps=plan.steps, rows=rows
        )
    elif method == grads.SMOOTHGRAD:
        values = grads.smoothgrad(
            module,
            batch,
            targets,
            samples=plan.samples,
            noise=plan.noise,
            seed=plan.seed,
            rows=rows,
        )
    else:
        raise ValueError(f"unknown gradient method {method!r}")
    return logits, targets, values


def compute_gradients(
    model: LoadedModel, batch: torch.Tensor, plan: GradientPlan, *, inputs: np.ndarray
) -> GradientResult:
    """Gradient maps for every image and target, with the sanity check if asked."""
    logits, targets, values = gradient_maps(model, batch, plan)
    randomized: tuple[str, ...] = ()
    correlation = None
    if plan.randomize:
        copy, names = randomized_copy(model, plan.randomize)
        randomized = tuple(names)
        _, _, again = gradient_maps(copy, batch, plan, fixed_targets=targets)
        correlation = rank_correlation(
            _numpy(values.abs().sum(dim=2)), _numpy(again.abs().sum(dim=2))
        )
    return GradientResult(
        method=plan.method,
        values=_numpy(values),
        targets=targets.cpu().numpy().astype(np.int64),
        several_targets=plan.several_targets,
        predictions=top_k_predictions(logits, model, plan.top_k),
        inputs=inputs,
        randomized=randomized,
        rank_correlation=correlation,
    )


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy().astype(np.float32, copy=False)
