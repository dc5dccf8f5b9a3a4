"""Gradients averaged over many inputs: integrated gradients (a path) and SmoothGrad (noise)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from service.engine.attribution.baselines import baseline
from service.engine.attribution.gradients import integrated_gradients, smoothgrad
from service.engine.attribution.methods.base import GradientInputs, register_gradient
from service.engine.attribution.target_objects import Target

Maps = tuple[Any, Target, torch.Tensor]


@dataclass(frozen=True)
class PathOptions:
    """Integrated gradients: `steps` along the path from the `baseline` (`baselines`)."""

    steps: int
    baseline: str


@dataclass(frozen=True)
class NoiseOptions:
    """SmoothGrad: `samples` noisy copies, noise std `noise` (of the input range), `seed`."""

    samples: int
    noise: float
    seed: int


def logits_and_targets(inputs: GradientInputs) -> tuple[Any, Target]:
    """One forward pass for the output, and the Target it resolves to."""
    with torch.no_grad():  # not inference mode: the targets index gradient passes below
        output = inputs.model.module(inputs.batch)
    if inputs.fixed_targets is not None:
        return output, inputs.fixed_targets
    return output, inputs.request.resolve(output, inputs.batch)


@register_gradient(
    "integrated-gradients",
    "integrated gradients from a baseline (steps, baseline)",
    order=60,
    options=PathOptions,
)
def integrated(inputs: GradientInputs) -> Maps:
    logits, targets = logits_and_targets(inputs)
    options, batch, module = inputs.options, inputs.batch, inputs.model.module
    start = baseline(batch, options.baseline, inputs.model.spec)
    values = integrated_gradients(
        module, batch, targets, start, steps=options.steps, rows=inputs.rows
    )
    return logits, targets, values


@register_gradient(
    "smoothgrad",
    "SmoothGrad: the mean gradient over noisy copies (samples, noise, seed)",
    order=70,
    options=NoiseOptions,
)
def smooth(inputs: GradientInputs) -> Maps:
    logits, targets = logits_and_targets(inputs)
    options, module, batch = inputs.options, inputs.model.module, inputs.batch
    values = smoothgrad(
        module,
        batch,
        targets,
        samples=options.samples,
        noise=options.noise,
        seed=options.seed,
        rows=inputs.rows,
    )
    return logits, targets, values
