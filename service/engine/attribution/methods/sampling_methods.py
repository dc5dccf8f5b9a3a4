"""Shapley value sampling, KernelSHAP and LIME over a grid or SLIC feature mask."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.methods.base import GradientInputs
from service.engine.attribution.methods.feature_ablation import feature_masks
from service.engine.attribution.methods.input_base import InputMaps, InputMethod, register_input
from service.engine.attribution.methods.occlusion import check_batch
from service.engine.attribution.perturbation.coalitions import (
    Coalitions,
    feature_positions,
    spread,
)
from service.engine.attribution.perturbation.features import GRID, parse_mask
from service.engine.attribution.perturbation.references import PERTURBATION_BASELINES, reference
from service.engine.attribution.perturbation.sampling import kernel_shap, lime, shapley_sampling
from service.engine.checks import check_choice

MAX_SAMPLES = 1024
Estimator = Callable[[Coalitions, int, torch.Generator], torch.Tensor]


def check_samples(samples: int) -> None:
    if not 1 <= samples <= MAX_SAMPLES:
        raise InvalidInput(
            f"samples: {samples}; between 1 and {MAX_SAMPLES}",
            field="samples",
            valid_range=[1, MAX_SAMPLES],
        )


class SamplingMethod(InputMethod):
    """A sampling estimator over the features of a mask; one seeded CPU generator per
    request draws every image's samples in turn."""

    estimator: Estimator

    def validate(self, model: LoadedModel, options: Any) -> None:
        parse_mask(options.mask, *model.spec.input_size)
        check_choice(options.baseline, PERTURBATION_BASELINES, field="baseline")
        check_batch(options.batch)
        check_samples(options.samples)

    def rows(self, features: int, samples: int) -> int:
        """Forward passes for one image."""
        return samples + 2

    def forward_passes(self, model: LoadedModel, options: Any) -> int:
        kind, number = parse_mask(options.mask, *model.spec.input_size)
        return 1 + self.rows(number * number if kind == GRID else number, options.samples)

    def compute(self, inputs: GradientInputs) -> InputMaps:
        options, batch, module = inputs.options, inputs.batch, inputs.model.module
        features = feature_masks(batch, inputs.model.spec, options.mask)
        with torch.inference_mode():
            output = module(batch)
        target = inputs.choose(output, slice(0, batch.shape[0]))
        baseline = reference(batch, options.baseline, inputs.model.spec)
        generator = torch.Generator().manual_seed(options.seed)
        masks = [feature_positions(image) for image in features]
        counts = [self.rows(len(ids), options.samples) for ids, _ in masks]
        values = torch.zeros(batch.shape[0], target.count, *batch.shape[1:], device=batch.device)
        with torch.inference_mode():  # output row i is image i's: its scores are known
            full = target.scores(output, torch.arange(batch.shape[0], device=batch.device))
        for image, (ids, position) in enumerate(masks):
            game = Coalitions(
                module=module,
                x=batch[image : image + 1],
                reference=baseline[image : image + 1],
                position=position,
                features=len(ids),
                target=target,
                image=image,
                per_pass=options.batch,
                done=sum(counts[:image]),
                total=sum(counts),
                full=full[image],
            )
            per_feature = type(self).estimator(game, options.samples, generator)
            values[image] = spread(per_feature.to(values), position, batch.shape[1])
        return InputMaps(output, target, values, features)


@dataclass(frozen=True)
class ShapleyOptions:
    """mask, baseline, batch as feature-ablation; samples: random feature orders; seed."""

    mask: str = "grid:4"
    samples: int = 25
    seed: int = 0
    baseline: str = "zero"
    batch: int = 16


@dataclass(frozen=True)
class RegressionOptions:
    """mask, baseline, batch as feature-ablation; samples: coalitions drawn; seed."""

    mask: str = "grid:4"
    samples: int = 200
    seed: int = 0
    baseline: str = "zero"
    batch: int = 16


@register_input
class ShapleySampling(SamplingMethod):
    name = "shapley-sampling"
    summary = "Shapley values from random feature orders over a mask (mask, samples, seed)"
    listing_order = 130
    Options = ShapleyOptions
    estimator = staticmethod(shapley_sampling)

    def rows(self, features: int, samples: int) -> int:
        return samples * max(features - 1, 0) + 2


@register_input
class KernelShap(SamplingMethod):
    name = "kernelshap"
    summary = "KernelSHAP: a complete linear model of sampled coalitions (mask, samples, seed)"
    listing_order = 140
    Options = RegressionOptions
    estimator = staticmethod(kernel_shap)


@register_input
class Lime(SamplingMethod):
    name = "lime"
    summary = "LIME: a locally weighted linear model of random coalitions (mask, samples, seed)"
    listing_order = 150
    Options = RegressionOptions
    estimator = staticmethod(lime)

    def rows(self, features: int, samples: int) -> int:
        return samples
