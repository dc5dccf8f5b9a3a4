"""The maps of a validated plan, as tensors: CAMs per layer and target, gradient maps.

Each method's own work is its registered class (see `methods`); this module runs the
forward pass they share, hands each method its inputs and brings maps to the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model_registry.errors import InvalidInput
from model_registry.layout import to_maps
from model_registry.registry import LoadedModel
from service.engine.attribution.chunks import DEFAULT_MEMORY_BUDGET, rows_per_chunk
from service.engine.attribution.graph import forward_to_layers, score_gradients
from service.engine.attribution.methods.registry import (
    CamInputs,
    GradientInputs,
    cam_method,
    gradient_method,
)
from service.engine.attribution.plan import BILINEAR, NEAREST, GradientPlan
from service.engine.attribution.targets import resolve_targets


@dataclass(frozen=True)
class RawCams:
    """Tensors of one CAM run: logits [B, classes], targets [B, T], maps per layer [B, T, H, W]."""

    logits: torch.Tensor
    targets: torch.Tensor
    maps: dict[str, torch.Tensor]


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
    chosen = cam_method(method)
    infos = {name: model.catalog.get(name) for name in layers}
    size = (batch.shape[-2], batch.shape[-1])
    gradient = chosen.needs_gradients
    run = forward_to_layers(
        model.module, batch, {n: i.calls for n, i in infos.items()}, grad=gradient
    )
    logits = run.logits.detach()
    targets = fixed_targets if fixed_targets is not None else resolve_targets(logits, requested)
    count, per_image = targets.shape
    layer_grads = {}
    if gradient:
        outputs = [run.activations[n] for n in layers]
        layer_grads = dict(zip(layers, score_gradients(run.logits, targets, outputs), strict=True))
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
        )
        maps[name] = _to_input_size(chosen.compute(inputs), size, upsample)
    return RawCams(logits, targets, maps)


def gradient_maps(
    model: LoadedModel,
    batch: torch.Tensor,
    plan: GradientPlan,
    *,
    fixed_targets: torch.Tensor | None = None,
    budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits [B, classes], targets [B, T], gradient maps [B, T, C, H, W]) for one plan."""

    def choose(logits: torch.Tensor, part: slice) -> torch.Tensor:
        if fixed_targets is not None:
            return fixed_targets[part]
        return resolve_targets(logits, plan.targets)

    inputs = GradientInputs(
        model=model,
        batch=batch,
        plan=plan,
        choose=choose,
        fixed_targets=fixed_targets,
        rows=rows_per_chunk(model, graph=True, budget=budget),
        budget=budget,
    )
    return gradient_method(plan.method).compute(inputs)
