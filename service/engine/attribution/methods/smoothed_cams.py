"""torchcam's sampled CAMs: SS-CAM, IS-CAM and SmoothGrad-CAM++, as torchcam 0.5 computes them.

Noise is drawn on the CPU from a generator seeded with `seed` (`CamSampling`), sample
after sample, each sample's noise for the whole batch in one `torch.normal(0, std, size)`
call, then moved to the model's device. torchcam draws the same tensors in the same order
with `Normal(0, std).sample(size)` on the global generator (that is `torch.normal` of the
same size), so `torch.manual_seed(seed)` before torchcam's call gives the same noise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch
import torch.nn.functional as F

from model_registry.layout import to_maps
from service.engine.attribution.chunks import rows_per_chunk
from service.engine.attribution.graph import forward_to_layers, gradients_of
from service.engine.attribution.methods.base import CamInputs, CamMethod, register
from service.engine.attribution.methods.gradient_cams import channel_map
from service.engine.attribution.target_objects import batch_rows
from service.engine.progress import report

SAMPLED = frozenset({"samples", "noise", "seed"})


def _noise(generator: torch.Generator, std: float, like: torch.Tensor) -> torch.Tensor:
    drawn = torch.normal(0.0, std, tuple(like.shape), generator=generator)
    return drawn.to(device=like.device, dtype=like.dtype)


def _upsampled_units(inputs: CamInputs) -> torch.Tensor:
    """Each channel min-max scaled at the layer's resolution (torchcam's `_normalize`), then
    bilinearly upsampled to the input (align_corners=False) -> [B, C, H, W]."""
    acts = inputs.activations
    shifted = acts - acts.amin(dim=(2, 3), keepdim=True)
    units = shifted / (shifted.amax(dim=(2, 3), keepdim=True) + 1e-8)
    size = inputs.batch.shape[-2:]
    return F.interpolate(units, size=size, mode="bilinear", align_corners=False)


def _mean_score_weights(
    inputs: CamInputs, masks: Iterable[torch.Tensor], samples: int
) -> torch.Tensor:
    """softmax over channels of the mean of (score of input * mask - score of input), one
    mask [B, C, H, W] per sample, as torchcam's Score-CAM family -> [B, T, C]."""
    module, batch, target = inputs.model.module, inputs.batch, inputs.target
    count, channels = inputs.activations.shape[:2]
    rows = rows_per_chunk(inputs.model, graph=False, budget=inputs.budget)
    base = target.scores(inputs.logits, batch_rows(target)).float()  # [B, T]
    total = torch.zeros(count, channels, target.count, device=batch.device)
    images = torch.arange(count, device=batch.device).repeat_interleave(channels)
    chans = torch.arange(channels, device=batch.device).repeat(count)
    passes = images.numel()
    with torch.inference_mode():
        for step, mask in enumerate(masks):
            flat = mask.flatten(0, 1)
            for start in range(0, passes, rows):
                img, ch = images[start : start + rows], chans[start : start + rows]
                output = module(batch[img] * flat[start : start + rows, None])
                total[img, ch] += target.scores(output, img).float() - base[img]
                report(step * passes + min(start + rows, passes), samples * passes)
    return (total / samples).softmax(dim=1).transpose(1, 2)


class _Sampled(CamMethod):
    parameters: ClassVar[frozenset[str]] = SAMPLED
    default_samples: ClassVar[int]
    default_noise: ClassVar[float] = 0.0

    def counts(self, inputs: CamInputs) -> tuple[int, float, torch.Generator]:
        chosen = inputs.sampling
        samples = self.default_samples if chosen.samples is None else chosen.samples
        noise = self.default_noise if chosen.noise is None else chosen.noise
        return samples, noise, torch.Generator().manual_seed(chosen.seed)


@register
class SmoothedScoreCam(_Sampled):
    """SS-CAM (Wang et al. 2020, https://arxiv.org/abs/2006.14255) as torchcam's `SSCAM`:
    Score-CAM whose masks (unit-scaled channels at input size) get N(0, noise^2) added,
    `samples` times; the weights are the softmax of the mean score gains."""

    name = "sscam"
    summary = "SS-CAM: Score-CAM averaged over noisy masks (torchcam's SSCAM)"
    listing_order = 72
    default_samples = 35
    default_noise = 2.0

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        samples, std, generator = self.counts(inputs)
        units = _upsampled_units(inputs)
        masks = (units + _noise(generator, std, units) for _ in range(samples))
        weights = _mean_score_weights(inputs, masks, samples)
        return channel_map(weights, inputs.activations, eigen=inputs.eigen_smooth)


@register
class IntegratedScoreCam(_Sampled):
    """IS-CAM (Naidu et al. 2020, https://arxiv.org/abs/2010.03023) as torchcam's `ISCAM`:
    sample i masks the input with the unit-scaled channels times sum_{j<=i} j / samples (the
    running coefficient torchcam uses); the weights are the softmax of the mean score gains."""

    name = "iscam"
    summary = "IS-CAM: Score-CAM integrated over scaled masks (torchcam's ISCAM)"
    listing_order = 74
    parameters = frozenset({"samples"})
    default_samples = 10

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        samples, _, _ = self.counts(inputs)
        units = _upsampled_units(inputs)
        coefficients = torch.arange(1, samples + 1, dtype=torch.float64).cumsum(0) / samples
        masks = (float(c) * units for c in coefficients)
        weights = _mean_score_weights(inputs, masks, samples)
        return channel_map(weights, inputs.activations, eigen=inputs.eigen_smooth)


@register
class SmoothGradCamPlusPlus(_Sampled):
    """SmoothGrad-CAM++ (Omeiza et al. 2019, https://arxiv.org/abs/1908.01224) as torchcam's
    `SmoothGradCAMpp`: gradients of `samples` inputs with N(0, noise^2) added; alpha =
    mean(g^2) / (2 mean(g^2) + sum_xy(mean(g^3) A) + 1e-8) with A the clean activations;
    weights sum_xy(alpha ReLU(g)). As torchcam, g in the weights and the activations the
    weights multiply are those of the last noisy sample."""

    name = "smoothgradcam++"
    summary = "SmoothGrad-CAM++: Grad-CAM++ on gradients of noisy inputs (torchcam's)"
    listing_order = 22
    needs_gradients = True  # gradients of its own noisy passes
    default_samples = 4
    default_noise = 0.3

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        samples, std, generator = self.counts(inputs)
        count, per_image = inputs.targets.shape
        grad_2 = grad_3 = last_grads = last_acts = torch.zeros(())
        for step in range(samples):
            noisy = inputs.batch + _noise(generator, std, inputs.batch)
            run = forward_to_layers(
                inputs.model.module, noisy, {inputs.layer: inputs.calls}, grad=True
            )
            output = run.activations[inputs.layer]
            scores = inputs.target.scores(run.logits, batch_rows(inputs.target))
            (grads,) = gradients_of(scores, [output])
            flat = to_maps(grads.flatten(0, 1), inputs.layout).float()
            last_grads = flat.unflatten(0, (count, per_image))
            last_acts = to_maps(output.detach(), inputs.layout).float()
            grad_2 = grad_2 + last_grads.pow(2)
            grad_3 = grad_3 + last_grads.pow(3)
            report(step + 1, samples)
        grad_2, grad_3 = grad_2 / samples, grad_3 / samples
        spread = (grad_3 * inputs.activations[:, None]).sum(dim=(3, 4), keepdim=True)
        alpha = grad_2 / (2 * grad_2 + spread + 1e-8)
        weights = (alpha * last_grads.clamp(min=0)).sum(dim=(3, 4))
        return channel_map(weights, last_acts, eigen=inputs.eigen_smooth)
