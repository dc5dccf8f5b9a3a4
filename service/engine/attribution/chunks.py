"""How many rows (perturbed inputs, path points, noisy samples) one forward pass may take.

Perturbation and path methods need hundreds of forward passes; batching them is what
makes them fast, and a memory bound is what keeps a large model from exhausting memory.
The bound is estimated from the layer catalog: with a graph, every leaf module's output
is kept for the backward pass; without one, only a few outputs live at a time.
"""

from __future__ import annotations

import math

from model_registry.registry import LoadedModel

DEFAULT_MEMORY_BUDGET = 512 * 2**20
MAX_ROWS = 64
_FLOAT_BYTES = 4


def _leaf_output_elements(model: LoadedModel) -> list[int]:
    leaves = {
        name
        for name, sub in model.module.named_modules()
        if name and not any(True for _ in sub.children())
    }
    return [
        math.prod(info.output_shape) * max(info.calls, 1)
        for info in model.catalog
        if info.name in leaves and info.output_shape is not None
    ]


def rows_per_chunk(model: LoadedModel, *, graph: bool, budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Rows per forward pass that fit `budget` bytes (at least 1, at most MAX_ROWS).

    Args:
        graph: the pass keeps an autograd graph from the input (input gradients).
    """
    elements = _leaf_output_elements(model) or [
        math.prod((model.spec.in_channels, *model.spec.input_size))
    ]
    per_row = _FLOAT_BYTES * (2 * sum(elements) if graph else 4 * max(elements))
    return max(1, min(MAX_ROWS, budget // max(per_row, 1)))
