"""How many rows (perturbed inputs, path points, noisy samples) one forward pass may take.

Perturbation and path methods need hundreds of forward passes; batching them is what
makes them fast, and a memory bound is what keeps a large model from exhausting memory.
The bound is estimated from the layer catalog: with a graph, every leaf module's output
(each call of it) is kept for the backward pass; without one, only a few outputs live at
a time. On CPU, batches beyond a handful of images stop paying (resnet50 at 224 x 224
runs slower per image at 16 than at 8 on a 2-core machine), so the CPU cap is lower; but
for a small model (the digits CNN at 32 x 32) 8 rows leave most of a pass to per-call
overhead, and 64 rows cost about half the CPU time per image of 8. So a CPU pass may take
more rows while its largest activation stays within `CPU_PASS_ELEMENTS` (8 MiB of float32).
"""

from __future__ import annotations

import math

from model_registry.registry import LoadedModel

DEFAULT_MEMORY_BUDGET = 512 * 2**20
CPU_ROWS = 8  # a 224 px model's CPU pass
MAX_ROWS = 64  # any pass: a small model's on CPU, every model's on an accelerator
CPU_PASS_ELEMENTS = 1 << 21  # the largest activation of a CPU pass beyond CPU_ROWS rows
_FLOAT_BYTES = 4
_LIVE_OUTPUTS = 4  # without a graph: an output, its input and a skip connection or two


def _leaf_outputs(model: LoadedModel) -> list[tuple[int, int]]:
    """(elements per sample, calls) of every leaf module's output."""
    leaves = {
        name
        for name, sub in model.module.named_modules()
        if name and not any(True for _ in sub.children())
    }
    return [
        (math.prod(info.output_shape), max(info.calls, 1))
        for info in model.catalog
        if info.name in leaves and info.output_shape is not None
    ]


def rows_per_chunk(model: LoadedModel, *, graph: bool, budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Rows per forward pass that fit `budget` bytes (at least 1, at most the device's cap).

    Args:
        graph: the pass keeps an autograd graph from the input (input gradients).
    """
    outputs = _leaf_outputs(model) or [
        (math.prod((model.spec.in_channels, *model.spec.input_size)), 1)
    ]
    if graph:
        per_row = _FLOAT_BYTES * 2 * sum(elements * calls for elements, calls in outputs)
    else:
        per_row = _FLOAT_BYTES * _LIVE_OUTPUTS * max(elements for elements, _ in outputs)
    cap = MAX_ROWS
    if model.device.type == "cpu":
        largest = max(
            model.spec.in_channels * math.prod(model.spec.input_size),
            *(elements for elements, _ in outputs),
        )
        cap = max(CPU_ROWS, min(MAX_ROWS, CPU_PASS_ELEMENTS // largest))
    return max(1, min(cap, budget // max(per_row, 1)))
