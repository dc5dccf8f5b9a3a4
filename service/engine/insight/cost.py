"""Rough run-time estimates, to decide whether a request answers directly or becomes a job.

Counted, not timed: multiply-adds of every convolution and linear layer from the catalog's
output shapes (scaled to the requested image size), divided by a sustained FLOP rate the
operator configures. Deterministic, free to compute, and wrong only by a constant factor,
which the rate absorbs.
"""

from __future__ import annotations

from torch import nn

from model_registry.registry import LoadedModel

# Backward through a layer costs about twice its forward pass.
FORWARD_AND_BACKWARD = 3.0
# scikit-learn's Barnes-Hut t-SNE (1000 iterations), seconds per point on one CPU core.
TSNE_SECONDS_PER_POINT = 4e-3


def forward_flops(
    model: LoadedModel, size: tuple[int, int] | None = None, *, upto: str | None = None
) -> float:
    """FLOPs of one forward pass of one image at `size`, stopping after layer `upto`."""
    modules = dict(model.module.named_modules())
    input_h, input_w = model.spec.input_size
    height, width = size or model.spec.input_size
    area = (height * width) / (input_h * input_w)
    last = model.catalog.get(upto).order if upto is not None else None
    total = 0.0
    for info in model.catalog:
        module = modules.get(info.name)
        if info.output_shape is None or info.calls == 0 or (last is not None and info.order > last):
            continue
        if isinstance(module, nn.Conv2d):
            outputs = info.output_shape[0] * info.output_shape[1] * info.output_shape[2] * area
            per_output = (
                module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            )
            total += 2.0 * outputs * per_output * info.calls
        elif isinstance(module, nn.Linear):
            total += 2.0 * module.in_features * module.out_features * info.calls
    return total


def optimization_seconds(
    model: LoadedModel, *, layer: str, size: tuple[int, int], steps: int, flops_per_second: float
) -> float:
    """Maximization or inversion: `steps` forward+backward passes up to `layer`."""
    return steps * FORWARD_AND_BACKWARD * forward_flops(model, size, upto=layer) / flops_per_second


def embedding_seconds(
    model: LoadedModel, *, count: int, method: str, flops_per_second: float
) -> float:
    """Forward passes for `count` images plus the projection."""
    projection = count * TSNE_SECONDS_PER_POINT if method == "tsne" else count * 1e-5
    return count * forward_flops(model) / flops_per_second + projection
