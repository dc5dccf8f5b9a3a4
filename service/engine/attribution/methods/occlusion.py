"""Occlusion (Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901), as Captum's Occlusion."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.methods.base import GradientInputs
from service.engine.attribution.methods.input_base import InputMaps, InputMethod, register_input
from service.engine.attribution.perturbation.ablation import ablation_attributions
from service.engine.attribution.perturbation.features import occlusion_windows, window_masks
from service.engine.attribution.perturbation.references import PERTURBATION_BASELINES, reference
from service.engine.checks import check_choice

MAX_BATCH = 256


@dataclass(frozen=True)
class OcclusionOptions:
    """window: the square's side and stride: its step, in model-input pixels; baseline:
    zero|black|blur|mean; batch: perturbed inputs per forward pass."""

    window: int = 16
    stride: int = 8
    baseline: str = "zero"
    batch: int = 16


def check_batch(batch: int) -> None:
    if not 1 <= batch <= MAX_BATCH:
        raise InvalidInput(
            f"batch: {batch} perturbed inputs per pass; between 1 and {MAX_BATCH}",
            field="batch",
            valid_range=[1, MAX_BATCH],
        )


@register_input
class Occlusion(InputMethod):
    """A window of every channel slides over the input and is replaced by the baseline;
    a pixel's attribution is the mean drop of the target score over the windows covering it
    (Captum's Occlusion with sliding_window_shapes=(C, window, window), strides=stride)."""

    name = "occlusion"
    summary = "the mean score drop when a sliding window is occluded (window, stride, baseline)"
    listing_order = 110
    Options = OcclusionOptions

    def validate(self, model: LoadedModel, options: OcclusionOptions) -> None:
        side = min(model.spec.input_size)
        if not 1 <= options.window <= side:
            raise InvalidInput(
                f"window: {options.window} pixels; the model input is "
                f"{model.spec.input_size[0]}x{model.spec.input_size[1]}",
                field="window",
                valid_range=[1, side],
            )
        if not 1 <= options.stride <= options.window:
            raise InvalidInput(
                f"stride: {options.stride} pixels; between 1 and the window ({options.window}), "
                "so every pixel is covered",
                field="stride",
                valid_range=[1, options.window],
            )
        check_choice(options.baseline, PERTURBATION_BASELINES, field="baseline")
        check_batch(options.batch)

    def forward_passes(self, model: LoadedModel, options: OcclusionOptions) -> int:
        height, width = model.spec.input_size
        return 1 + len(occlusion_windows(height, width, options.window, options.stride))

    def compute(self, inputs: GradientInputs) -> InputMaps:
        options, batch, module = inputs.options, inputs.batch, inputs.model.module
        height, width = batch.shape[-2:]
        corners = occlusion_windows(height, width, options.window, options.stride)
        with torch.inference_mode():
            output = module(batch)
        target = inputs.choose(output, slice(0, batch.shape[0]))

        def parts(_image: int, first: int, end: int) -> torch.Tensor:
            return window_masks(corners[first:end], options.window, height, width, batch.device)

        values = ablation_attributions(
            module,
            batch,
            output,
            target,
            reference(batch, options.baseline, inputs.model.spec),
            parts=parts,
            counts=[len(corners)] * batch.shape[0],
            per_pass=options.batch,
            average=True,
        )
        return InputMaps(output, target, values)
