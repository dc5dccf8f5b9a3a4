"""Feature ablation over a grid or SLIC mask, as Captum's FeatureAblation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_registry.registry import LoadedModel
from model_registry.spec import ModelSpec
from service.engine.attribution.methods.base import GradientInputs
from service.engine.attribution.methods.input_base import InputMaps, InputMethod, register_input
from service.engine.attribution.methods.occlusion import check_batch
from service.engine.attribution.perturbation.ablation import ablation_attributions
from service.engine.attribution.perturbation.features import (
    GRID,
    grid_mask,
    parse_mask,
    slic_mask,
)
from service.engine.attribution.perturbation.references import PERTURBATION_BASELINES, reference
from service.engine.checks import check_choice


@dataclass(frozen=True)
class AblationOptions:
    """mask: grid:N or slic:N; baseline: zero|black|blur|mean; batch: inputs per pass."""

    mask: str = "grid:4"
    baseline: str = "zero"
    batch: int = 16


def feature_masks(batch: torch.Tensor, spec: ModelSpec, mask: str) -> torch.Tensor:
    """int64 [B, H, W]: the feature of every pixel of every image (`features`)."""
    height, width = batch.shape[-2:]
    kind, number = parse_mask(mask, height, width)
    if kind == GRID:
        return grid_mask(height, width, number).expand(batch.shape[0], -1, -1).to(batch.device)
    mean = torch.tensor(spec.mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    pixels = (batch * std + mean).clamp(0, 1).permute(0, 2, 3, 1).double().cpu().numpy()
    return torch.stack([slic_mask(image, number) for image in pixels]).to(batch.device)


def ablate_features(inputs: GradientInputs, features: torch.Tensor) -> InputMaps:
    """Each feature of `features` [B, H, W] replaced by the baseline in its own pass."""
    options, batch, module = inputs.options, inputs.batch, inputs.model.module
    with torch.inference_mode():
        output = module(batch)
    target = inputs.choose(output, slice(0, batch.shape[0]))
    ids = [torch.unique(image) for image in features]

    def parts(image: int, first: int, end: int) -> torch.Tensor:
        return features[image][None] == ids[image][first:end, None, None]

    values = ablation_attributions(
        module,
        batch,
        output,
        target,
        reference(batch, options.baseline, inputs.model.spec),
        parts=parts,
        counts=[len(i) for i in ids],
        per_pass=options.batch,
        average=False,
    )
    return InputMaps(output, target, values, features)


@register_input
class FeatureAblation(InputMethod):
    """Each feature of the mask in turn replaced by the baseline; its pixels get the drop of
    the target score (Captum's FeatureAblation with the same feature_mask)."""

    name = "feature-ablation"
    summary = "the score drop when each feature of a grid or SLIC mask is ablated (mask, baseline)"
    listing_order = 120
    Options = AblationOptions

    def validate(self, model: LoadedModel, options: AblationOptions) -> None:
        parse_mask(options.mask, *model.spec.input_size)
        check_choice(options.baseline, PERTURBATION_BASELINES, field="baseline")
        check_batch(options.batch)

    def forward_passes(self, model: LoadedModel, options: AblationOptions) -> int:
        kind, number = parse_mask(options.mask, *model.spec.input_size)
        return 1 + (number * number if kind == GRID else number)

    def compute(self, inputs: GradientInputs) -> InputMaps:
        features = feature_masks(inputs.batch, inputs.model.spec, inputs.options.mask)
        return ablate_features(inputs, features)
