"""The maps of a validated plan, as tensors: CAMs per layer and target, gradient maps.

Each method's own work is its registered class (see `methods`); this module looks the
method up by name, hands it its inputs (`cam_pass` runs the CAM forward pass they share).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from model_registry.registry import LoadedModel
from service.engine.attribution.cam_pass import BILINEAR, RawCams, run_cam, unit_scale
from service.engine.attribution.cam_smoothing import augmented, layer_mean
from service.engine.attribution.chunks import DEFAULT_MEMORY_BUDGET, rows_per_chunk
from service.engine.attribution.methods.base import CamSampling, GradientInputs
from service.engine.attribution.methods.registry import cam_method, gradient_method
from service.engine.attribution.target_objects import Target, TargetRequest, as_target

if TYPE_CHECKING:
    from service.engine.attribution.plan import GradientPlan

__all__ = ["RawCams", "cam_maps", "gradient_maps", "unit_scale"]


def cam_maps(
    model: LoadedModel,
    batch: torch.Tensor,
    method: str,
    layers: tuple[str, ...],
    requested: TargetRequest | tuple[int, ...],
    *,
    fixed_targets: Target | torch.Tensor | None = None,
    budget: int = DEFAULT_MEMORY_BUDGET,
    upsample: str = BILINEAR,
    eigen_smooth: bool = False,
    aug_smooth: bool = False,
    aggregate_layers: bool = False,
    sampling: CamSampling = CamSampling(),
) -> RawCams:
    """`cam_pass.run_cam` for the CAM method registered as `method` (see `cam_smoothing`):
    with `aggregate_layers`, one map 'a+b' for all layers; with `aug_smooth`, the mean of
    the min-max scaled maps over flips and brightness factors."""
    chosen = cam_method(method)

    def cams(images: torch.Tensor, fixed: Target | torch.Tensor | None) -> RawCams:
        raw = run_cam(
            model,
            images,
            chosen,
            layers,
            requested,
            fixed_targets=fixed,
            budget=budget,
            upsample=upsample,
            eigen_smooth=eigen_smooth,
            scaled=aggregate_layers,
            sampling=sampling,
        )
        return layer_mean(raw) if aggregate_layers else raw

    raw = cams(batch, fixed_targets)
    if not aug_smooth:
        return raw
    return augmented(batch, raw, lambda changed: cams(changed, raw.target))


def gradient_maps(
    model: LoadedModel,
    batch: torch.Tensor,
    plan: GradientPlan,
    *,
    fixed_targets: Target | torch.Tensor | None = None,
    budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[Any, Target, torch.Tensor]:
    """(the model's output, the Target, gradient maps [B, T, C, H, W]) for one plan."""
    fixed = as_target(fixed_targets) if fixed_targets is not None else None

    def choose(output: Any, part: slice) -> Target:
        if fixed is not None:
            return fixed.select(part)
        return plan.targets.resolve(output, batch[part])

    chosen = gradient_method(plan.method)
    inputs = GradientInputs(
        model=model,
        batch=batch,
        request=plan.targets,
        options=chosen.options(plan),
        choose=choose,
        fixed_targets=fixed,
        rows=rows_per_chunk(model, graph=True, budget=budget),
        budget=budget,
    )
    return chosen.compute(inputs)
