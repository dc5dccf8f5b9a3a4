"""Gradients averaged over many inputs: integrated gradients (a path) and SmoothGrad (noise)."""

from __future__ import annotations

import torch

from service.engine.attribution.baselines import baseline
from service.engine.attribution.gradients import integrated_gradients, smoothgrad
from service.engine.attribution.methods.registry import GradientInputs, GradientMethod, register
from service.engine.attribution.targets import resolve_targets


def logits_and_targets(inputs: GradientInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass for the logits, and the targets they resolve to."""
    with torch.no_grad():  # not inference mode: the targets index gradient passes below
        logits = inputs.model.module(inputs.batch)
    if inputs.fixed_targets is not None:
        return logits, inputs.fixed_targets
    return logits, resolve_targets(logits, inputs.plan.targets)


@register
class IntegratedGradients(GradientMethod):
    name = "integrated-gradients"
    summary = "integrated gradients from a baseline (steps, baseline)"
    listing_order = 60

    def compute(self, inputs: GradientInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, targets = logits_and_targets(inputs)
        plan, batch = inputs.plan, inputs.batch
        start = baseline(batch, plan.baseline, inputs.model.spec)
        values = integrated_gradients(
            inputs.model.module, batch, targets, start, steps=plan.steps, rows=inputs.rows
        )
        return logits, targets, values


@register
class SmoothGrad(GradientMethod):
    name = "smoothgrad"
    summary = "SmoothGrad: the mean gradient over noisy copies (samples, noise, seed)"
    listing_order = 70

    def compute(self, inputs: GradientInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, targets = logits_and_targets(inputs)
        plan = inputs.plan
        values = smoothgrad(
            inputs.model.module,
            inputs.batch,
            targets,
            samples=plan.samples,
            noise=plan.noise,
            seed=plan.seed,
            rows=inputs.rows,
        )
        return logits, targets, values
