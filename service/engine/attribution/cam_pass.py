"""One CAM pass: a forward pass for every layer and target, each method's own work, and
the maps brought to the input size.

It takes the method object, not its name, so a method that runs another one (guided
Grad-CAM runs Grad-CAM) imports this module without going through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from model_registry.errors import InvalidInput
from model_registry.fast_paths.packed_convolution import packed_weights
from model_registry.layout import to_maps
from model_registry.registry import LoadedModel
from service.engine.attribution.chunks import DEFAULT_MEMORY_BUDGET
from service.engine.attribution.graph import forward_to_layers, gradients_of
from service.engine.attribution.methods.base import CamInputs, CamMethod, CamSampling
from service.engine.attribution.target_objects import (
    ClassRequest,
    Target,
    TargetRequest,
    as_target,
    batch_rows,
)
from service.engine.dense.outputs import detached

# How a map reaches the input size (guided-gradcam's `upsample` option).
NEAREST = "nearest"
BILINEAR = "bilinear"
UPSAMPLES = (NEAREST, BILINEAR)


@dataclass(frozen=True)
class RawCams:
    """Tensors of one CAM run: the model's output (logits [B, classes] for a classifier),
    target classes [B, T], maps per layer [B, T, H, W], and the Target they explain."""

    logits: Any
    targets: torch.Tensor
    maps: dict[str, torch.Tensor]
    target: Target


def _to_input_size(
    raw: torch.Tensor, size: tuple[int, int], mode: str = BILINEAR, *, scaled: bool = False
) -> torch.Tensor:
    """ReLU, then upsampling: bilinear with half-pixel centres (as cv2.resize in
    pytorch-grad-cam), or nearest (as Captum's LayerAttribution.interpolate). `scaled`:
    min-max scaled before upsampling, as pytorch-grad-cam scales each of several layers."""
    positive = raw.clamp(min=0)
    if scaled:
        positive = unit_scale(positive)
    if mode == NEAREST:
        return F.interpolate(positive, size=size, mode="nearest")
    return F.interpolate(positive, size=size, mode="bilinear", align_corners=False)


def unit_scale(maps: torch.Tensor) -> torch.Tensor:
    """Per map [..., H, W]: (m - min) / (max(m - min) + 1e-7), as pytorch-grad-cam scales."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    shifted = maps - low
    return shifted / (shifted.amax(dim=(-2, -1), keepdim=True) + 1e-7)


@packed_weights()  # passes without a graph on reordered weights: equal to rounding
def run_cam(
    model: LoadedModel,
    batch: torch.Tensor,
    chosen: CamMethod,
    layers: tuple[str, ...],
    requested: TargetRequest | tuple[int, ...],
    *,
    fixed_targets: Target | torch.Tensor | None = None,
    budget: int = DEFAULT_MEMORY_BUDGET,
    upsample: str = BILINEAR,
    eigen_smooth: bool = False,
    scaled: bool = False,
    sampling: CamSampling = CamSampling(),
) -> RawCams:
    """One forward pass for every layer and target, then each method's own work.

    Args:
        chosen: the CAM method (`maps.cam_maps` looks one up by name).
        batch: preprocessed inputs [B, C, H, W] on the model's device.
        layers: validated spatial layers in forward order.
        requested: a target request (`target_objects`), or classes for every image
            (() = top-1 per image).
        fixed_targets: a Target (or classes [B, T]) overriding `requested` (the sanity check
            reuses the original's).
        eigen_smooth: each map is the first principal component of the method's weighted
            activations (pytorch-grad-cam's `eigen_smooth`).
        scaled: each map min-max scaled at the layer's resolution, before upsampling.
        sampling: `samples`, `noise` and `seed` of the sampled CAMs.
    """
    infos = {name: model.catalog.get(name) for name in layers}
    size = (batch.shape[-2], batch.shape[-1])
    gradient = chosen.needs_gradients
    run = forward_to_layers(
        model.module, batch, {n: i.calls for n, i in infos.items()}, grad=gradient
    )
    logits = detached(run.logits)
    request = requested if not isinstance(requested, tuple) else ClassRequest(requested)
    target = (
        as_target(fixed_targets)
        if fixed_targets is not None
        else request.resolve(run.logits, batch)
    )
    targets = target.classes
    count, per_image = targets.shape
    layer_grads = {}
    if gradient:
        outputs = [run.activations[n] for n in layers]
        scores = target.scores(run.logits, batch_rows(target))
        layer_grads = dict(zip(layers, gradients_of(scores, outputs), strict=True))
    maps: dict[str, torch.Tensor] = {}
    for name in layers:
        layout = infos[name].map_layout
        if layout is None:  # check_spatial_layers refuses such layers
            raise InvalidInput(f"layer: '{name}' has no spatial output", field="layer")
        output = run.activations[name].detach()
        grads = None
        if gradient:
            flat = layer_grads[name].flatten(0, 1)
            grads = to_maps(flat, layout).unflatten(0, (count, per_image)).float()
        inputs = CamInputs(
            model=model,
            batch=batch,
            layer=name,
            calls=infos[name].calls,
            output=output,
            layout=layout,
            activations=to_maps(output, layout).float(),
            gradients=grads,
            logits=logits,
            targets=targets,
            budget=budget,
            target=target,
            eigen_smooth=eigen_smooth,
            sampling=sampling,
        )
        maps[name] = _to_input_size(chosen.compute(inputs), size, upsample, scaled=scaled)
    return RawCams(logits, targets, maps, target)
