"""DeepLIFT, DeepLiftShap and GradientSHAP: attributions that sum to f(x) - f(baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.baselines import BASELINES, baseline
from service.engine.attribution.deeplift import deeplift
from service.engine.attribution.gradients import row_gradients, target_rows
from service.engine.attribution.methods.base import GradientInputs
from service.engine.attribution.methods.input_base import InputMaps, InputMethod, register_input
from service.engine.attribution.methods.sampling_methods import check_samples
from service.engine.attribution.target_objects import Target
from service.engine.checks import check_choice, check_finite
from service.engine.progress import report

PROPAGATION_FAMILY = "propagation"
# deeplift-shap's baselines: the baseline plus Gaussian noise of this std / input range.
SHAP_BASELINE_NOISE = 0.1


@dataclass(frozen=True)
class DeepLiftOptions:
    """baseline: zero|black|blur (as integrated gradients)."""

    baseline: str = "zero"


@dataclass(frozen=True)
class DeepLiftShapOptions:
    """baseline: zero|black|blur; samples: noised copies of it; seed."""

    baseline: str = "zero"
    samples: int = 8
    seed: int = 0


@dataclass(frozen=True)
class GradientShapOptions:
    """samples: draws; noise: input noise std / (max - min) of the image; seed; baseline."""

    samples: int = 16
    noise: float = 0.0
    seed: int = 0
    baseline: str = "zero"


def _rows(inputs: GradientInputs) -> tuple[object, Target, torch.Tensor, torch.Tensor]:
    """The output, the Target, and for every (image, target) row its image and slot."""
    with torch.no_grad():
        output = inputs.model.module(inputs.batch)
    target = inputs.choose(output, slice(0, inputs.batch.shape[0]))
    count, per_image = target.classes.shape
    images = torch.arange(count, device=inputs.batch.device).repeat_interleave(per_image)
    slots = torch.arange(per_image, device=inputs.batch.device).repeat(count)
    return output, target, images, slots


def _deeplift_rows(inputs: GradientInputs, starts: list[torch.Tensor]) -> InputMaps:
    """Mean DeepLIFT attribution over the baselines `starts` (each [B, C, H, W])."""
    output, target, images, slots = _rows(inputs)
    batch, module = inputs.batch, inputs.model.module
    values = torch.zeros(images.numel(), *batch.shape[1:], device=batch.device)
    step = max(1, inputs.rows // 2)
    total = len(starts) * images.numel()
    for number, start in enumerate(starts):
        for first in range(0, images.numel(), step):
            img, slot = images[first : first + step], slots[first : first + step]

            def score(
                out: object, img: torch.Tensor = img, slot: torch.Tensor = slot
            ) -> torch.Tensor:
                both = target.scores(out, torch.cat([img, img])).gather(
                    1, torch.cat([slot, slot])[:, None]
                )[:, 0]
                return both[: img.numel()]

            values[first : first + step] += deeplift(module, batch[img], start[img], score)
            report(number * images.numel() + first + img.numel(), total)
    shape = (*target.classes.shape, *batch.shape[1:])
    return InputMaps(output, target, (values / len(starts)).view(shape))


def _check_baseline(value: str) -> None:
    check_choice(value, BASELINES, field="baseline")


def _check_task(model: LoadedModel, method: str) -> None:
    """A detector picks and suppresses boxes: no Rescale multipliers exist for that step."""
    if model.spec.task == "detection":
        raise InvalidInput(
            f"method: {method} has no rule for a detector's box selection (non-maximum "
            f"suppression); '{model.name}' is a detection model",
            field="method",
        )


@register_input
class DeepLift(InputMethod):
    """DeepLIFT's Rescale rule (Shrikumar et al. 2017) per call of every ReLU and max pool,
    so modules that run twice are handled; equals Captum's DeepLift where Captum is right."""

    name = "deeplift"
    summary = "DeepLIFT (Rescale rule) from a baseline; sums to f(x) - f(baseline) (baseline)"
    family = PROPAGATION_FAMILY
    needs_gradients = True
    listing_order = 160
    Options = DeepLiftOptions

    def validate(self, model: LoadedModel, options: DeepLiftOptions) -> None:
        _check_task(model, self.name)
        _check_baseline(options.baseline)

    def forward_passes(self, model: LoadedModel, options: DeepLiftOptions) -> int:
        return 2

    def compute(self, inputs: GradientInputs) -> InputMaps:
        start = baseline(inputs.batch, inputs.options.baseline, inputs.model.spec)
        return _deeplift_rows(inputs, [start])


def _noised(
    batch: torch.Tensor, start: torch.Tensor, samples: int, seed: int
) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    spread = (batch.amax(dim=(1, 2, 3)) - batch.amin(dim=(1, 2, 3))).cpu().view(-1, 1, 1, 1)
    return [
        start
        + (torch.randn(batch.shape, generator=generator) * spread * SHAP_BASELINE_NOISE).to(
            batch.device
        )
        for _ in range(samples)
    ]


@register_input
class DeepLiftShap(InputMethod):
    """DeepLIFT averaged over `samples` baselines (Captum's DeepLiftShap): the baseline plus
    Gaussian noise of std 0.1 x the image's range, drawn from `seed`."""

    name = "deeplift-shap"
    summary = "DeepLIFT averaged over noised copies of a baseline (baseline, samples, seed)"
    family = PROPAGATION_FAMILY
    needs_gradients = True
    listing_order = 170
    Options = DeepLiftShapOptions

    def validate(self, model: LoadedModel, options: DeepLiftShapOptions) -> None:
        _check_task(model, self.name)
        _check_baseline(options.baseline)
        check_samples(options.samples)

    def forward_passes(self, model: LoadedModel, options: DeepLiftShapOptions) -> int:
        return 2 * options.samples

    def compute(self, inputs: GradientInputs) -> InputMaps:
        options, batch = inputs.options, inputs.batch
        start = baseline(batch, options.baseline, inputs.model.spec)
        return _deeplift_rows(inputs, _noised(batch, start, options.samples, options.seed))


@register_input
class GradientShap(InputMethod):
    """GradientSHAP (Lundberg & Lee 2017, Captum's GradientShap with one baseline): the mean
    over `samples` draws of gradient x (noisy input - baseline), the gradient taken at
    baseline + a (noisy input - baseline), a ~ U(0, 1), noise std `noise` x image range."""

    name = "gradient-shap"
    summary = "expected gradients between a baseline and noisy inputs (samples, noise, seed)"
    family = PROPAGATION_FAMILY
    needs_gradients = True
    listing_order = 180
    Options = GradientShapOptions

    def validate(self, model: LoadedModel, options: GradientShapOptions) -> None:
        _check_baseline(options.baseline)
        check_samples(options.samples)
        check_finite("noise", options.noise, low=0.0, high=10.0)

    def forward_passes(self, model: LoadedModel, options: GradientShapOptions) -> int:
        return options.samples

    def compute(self, inputs: GradientInputs) -> InputMaps:
        options, batch, module = inputs.options, inputs.batch, inputs.model.module
        output, target, images, slots = _rows(inputs)
        start = baseline(batch, options.baseline, inputs.model.spec)
        generator = torch.Generator().manual_seed(options.seed)
        spread = (batch.amax(dim=(1, 2, 3)) - batch.amin(dim=(1, 2, 3))).cpu()
        values = torch.zeros(images.numel(), *batch.shape[1:], device=batch.device)
        for sample in range(options.samples):
            noise = torch.randn(batch.shape, generator=generator) * spread.view(-1, 1, 1, 1)
            noisy = batch + (noise * options.noise).to(batch.device)
            alpha = torch.rand(batch.shape[0], generator=generator).view(-1, 1, 1, 1)
            points = start + alpha.to(batch.device) * (noisy - start)
            for first in range(0, images.numel(), inputs.rows):
                img, slot = images[first : first + inputs.rows], slots[first : first + inputs.rows]
                grads = row_gradients(module, points[img], target_rows(target, img, slot))
                values[first : first + inputs.rows] += grads * (noisy - start)[img]
            report(sample + 1, options.samples)
        shape = (*target.classes.shape, *batch.shape[1:])
        return InputMaps(output, target, (values / options.samples).view(shape))
