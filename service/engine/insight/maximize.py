"""Activation maximization: the input that most excites a channel, a neuron or a direction.

Validate first (`plan_maximize`), then optimize (`maximize`). The optimized tensor is a
Fourier spectrum owned by the request (see `transforms.FourierImage`); gradients are taken
with `torch.autograd.grad` with respect to it alone, so the shared model's parameters
(frozen by the registry) never receive a `.grad` and no hook outlives a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.checks import check_cap
from service.engine.insight.forward import layer_tensor, pixel_layer
from service.engine.insight.options import (
    LR,
    TV,
    activation_layer,
    check_channel,
    parse_direction,
    parse_neuron,
)
from service.engine.insight.transforms import (
    FourierImage,
    TransformOptions,
    random_transform,
    total_variation,
)
from service.engine.progress import Progress, no_progress

NOISE_SAMPLES = 8
MIN_SIZE = 8
DEFAULT_TV = 1.0


@dataclass(frozen=True)
class MaximizePlan:
    """A validated request.

    Attributes:
        layer, calls: the layer and how often it runs per forward pass.
        channel: the channel to excite (None with a direction).
        neuron: (x, y) position in the layer's map, or None for the mean over positions.
        direction: unit vector over the layer's channels, or None.
        steps, lr, size, seed: optimization budget, Adam step size, image (height, width), seed.
        tv: weight of the total-variation penalty on the image.
        transforms, decorrelate: random jitter/scale/rotation; decorrelated colour space.
    """

    layer: str
    calls: int
    channel: int | None
    neuron: tuple[int, int] | None
    direction: tuple[float, ...] | None
    steps: int
    lr: float
    size: tuple[int, int]
    seed: int
    tv: float
    transforms: bool = True
    decorrelate: bool = True

    def target(self) -> str:
        what = f"channel {self.channel}" if self.direction is None else "direction"
        return what + (f" at x={self.neuron[0]}, y={self.neuron[1]}" if self.neuron else "")


@dataclass(frozen=True)
class MaximizeResult:
    """The optimized image and how well it works.

    Attributes:
        image: float32 [C, H, W] in [0, 1].
        curve: float32 [steps], the objective at each step (on the transformed image).
        activation: the objective for the final image, untransformed.
        noise_activation: the objective for uniform noise, averaged over a few images.
    """

    image: np.ndarray
    curve: np.ndarray
    activation: float
    noise_activation: float


def output_shape_at(
    model: LoadedModel, layer: str, calls: int, size: tuple[int, int]
) -> tuple[int, ...]:
    """The layer's output shape (no batch) when the model is fed at `size`."""
    if size == model.spec.input_size:
        shape = model.catalog.get(layer).output_shape
        assert shape is not None  # checked by activation_layer
        return shape
    probe = torch.zeros((1, model.spec.in_channels, *size), device=model.device)
    try:
        with torch.inference_mode():
            out = layer_tensor(model.module, probe, layer, calls=calls)
    except RuntimeError as exc:
        raise InvalidInput(
            f"size: model '{model.name}' cannot run at {size[0]}x{size[1]}; try its input size "
            f"{model.spec.input_size[0]}x{model.spec.input_size[1]}",
            field="size",
        ) from exc
    return tuple(out.shape[1:])


def plan_maximize(
    model: LoadedModel,
    *,
    layer: str,
    channel: int | None = None,
    neuron: str | None = None,
    direction: str | None = None,
    steps: int = 256,
    lr: float = 0.05,
    size: int | None = None,
    seed: int = 0,
    tv: float = DEFAULT_TV,
    transforms: bool = True,
    decorrelate: bool = True,
    max_steps: int = 4096,
    max_size: int = 512,
) -> MaximizePlan:
    """Check every option, including the neuron position at the requested size.

    Runs one probe forward pass when `size` differs from the model's input size.
    """
    info = activation_layer(model, layer)
    shape = info.output_shape
    assert shape is not None
    check_cap("steps", steps, max_steps, setting="max_insight_steps")
    lr = LR.check("lr", lr)
    tv = TV.check("tv", tv)
    hw = (
        model.spec.input_size
        if size is None
        else (check_cap("size", size, max_size, low=MIN_SIZE, setting="max_insight_size"),) * 2
    )
    if (channel is None) == (direction is None):
        raise InvalidInput(
            "give exactly one of 'channel' (an index) or 'direction' (one weight per channel)",
            field="channel" if channel is None else "direction",
        )
    parsed_direction = None
    if direction is not None:
        parsed_direction = parse_direction(direction, shape[0], layer=info.name)
    else:
        assert channel is not None
        check_channel(channel, shape[0], layer=info.name)
    position = None
    # Probing also proves the model runs at this size (a fixed-size flatten would not), so
    # a bad size is a 422 now rather than a failure in the middle of a job.
    at_size = output_shape_at(model, info.name, info.calls, hw)
    if neuron is not None:
        position = parse_neuron(neuron)
        if len(at_size) != 3:
            raise InvalidInput(
                f"neuron: layer '{info.name}' has a vector output {list(at_size)}; "
                "a neuron needs a [C, H, W] map",
                field="neuron",
            )
        x, y = position
        if x >= at_size[2] or y >= at_size[1]:
            raise InvalidInput(
                f"neuron: ({x}, {y}) is outside the {at_size[2]}x{at_size[1]} map of layer "
                f"'{info.name}' at input size {hw[0]}x{hw[1]} "
                f"(valid: x 0-{at_size[2] - 1}, y 0-{at_size[1] - 1})",
                field="neuron",
                valid_range=[[0, at_size[2] - 1], [0, at_size[1] - 1]],
            )
    return MaximizePlan(
        layer=info.name,
        calls=info.calls,
        channel=channel,
        neuron=position,
        direction=parsed_direction,
        steps=steps,
        lr=lr,
        size=(int(hw[0]), int(hw[1])),
        seed=seed,
        tv=tv,
        transforms=transforms,
        decorrelate=decorrelate,
    )


def objective(
    activation: torch.Tensor, plan: MaximizePlan, direction: torch.Tensor | None
) -> torch.Tensor:
    """Per-image objective [B]: the channel (or direction) mean over positions, or at the neuron."""
    maps = activation[:, :, None, None] if activation.ndim == 2 else activation
    if direction is not None:
        values = (maps * direction.view(1, -1, 1, 1)).sum(dim=1)
    else:
        values = maps[:, plan.channel]
    if plan.neuron is not None:
        x, y = plan.neuron
        return values[:, y, x]
    return values.mean(dim=(1, 2))


def _evaluate(model: LoadedModel, pixels: torch.Tensor, plan: MaximizePlan) -> torch.Tensor:
    """The layer's activation for [0, 1] pixels."""
    return pixel_layer(model, pixels, plan.layer, calls=plan.calls)


def noise_baseline(
    model: LoadedModel, plan: MaximizePlan, *, samples: int = NOISE_SAMPLES
) -> tuple[float, float]:
    """(objective, mean |activation| of the whole layer) for uniform-noise images.

    The first is the baseline a visualization should beat; the second sets the objective's
    scale so that one `tv` weight means the same on every layer.
    """
    generator = torch.Generator().manual_seed(plan.seed + 1)
    noise = torch.rand((samples, model.spec.in_channels, *plan.size), generator=generator).to(
        model.device
    )
    with torch.inference_mode():
        activation = _evaluate(model, noise, plan)
        value = float(objective(activation, plan, _direction_tensor(plan, model.device)).mean())
        scale = float(activation.abs().mean())
    return value, max(scale, 1e-6)


def _direction_tensor(plan: MaximizePlan, device: torch.device) -> torch.Tensor | None:
    return (
        None
        if plan.direction is None
        else torch.tensor(plan.direction, dtype=torch.float32, device=device)
    )


def maximize(
    model: LoadedModel, plan: MaximizePlan, *, progress: Progress = no_progress
) -> MaximizeResult:
    """Optimize the image for `plan.steps` Adam steps; same seed, same image (on CPU).

    `progress(step, total)` runs after every step and may raise `Cancelled`.
    """
    baseline, scale = noise_baseline(model, plan)
    generator = torch.Generator().manual_seed(plan.seed)
    image = FourierImage(
        model.spec.in_channels,
        plan.size,
        generator=generator,
        device=model.device,
        decorrelate=plan.decorrelate,
    )
    direction = _direction_tensor(plan, model.device)
    options = TransformOptions()
    optimizer = torch.optim.Adam([image.spectrum], lr=plan.lr)
    curve = np.zeros(plan.steps, dtype=np.float32)
    with torch.enable_grad():
        for step in range(plan.steps):
            pixels = image.pixels()
            seen = random_transform(pixels, generator, options) if plan.transforms else pixels
            value = objective(_evaluate(model, seen, plan), plan, direction).mean()
            loss = -value / scale
            if plan.tv:
                loss = loss + plan.tv * total_variation(pixels)
            # Gradients for the spectrum only: the model's parameters are frozen and get no .grad.
            (gradient,) = torch.autograd.grad(loss, [image.spectrum])
            image.spectrum.grad = gradient
            optimizer.step()
            curve[step] = float(value.detach())
            progress(step + 1, plan.steps)
    with torch.inference_mode():
        final = image.pixels()
        activation = float(objective(_evaluate(model, final, plan), plan, direction).mean())
    return MaximizeResult(
        image=final[0].float().cpu().numpy(),
        curve=curve,
        activation=activation,
        noise_activation=baseline,
    )
