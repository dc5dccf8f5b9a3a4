"""Rows per pass for the evaluation's own passes: perturbed inputs through the model, and
the input-space methods' path points and samples.

`attribution.chunks.rows_per_chunk` caps a CPU pass at 8 rows, measured on 224 px models,
where larger batches stop paying. An evaluation runs thousands of passes of one model, and
for a small model (the digits CNN at 32 x 32) 8 rows leave most of a pass to per-call
overhead: 64 rows cost about half the CPU time per image of 8. So here a pass may take
more rows while its largest activation stays within `CHUNK_ELEMENTS` (8 MiB of float32)
and the memory budget allows them; a 224 px model keeps `rows_per_chunk`'s rows.
"""

from __future__ import annotations

import math

from model_registry.registry import LoadedModel
from service.engine.attribution.chunks import DEFAULT_MEMORY_BUDGET, rows_per_chunk

CHUNK_ELEMENTS = 1 << 21  # the largest activation of a pass: 8 MiB of float32
MAX_ROWS = 64


def _largest_activation(model: LoadedModel) -> int:
    """Elements per row of the model's largest layer output (its input when none is known)."""
    sizes = [math.prod(info.output_shape) for info in model.catalog if info.output_shape]
    inputs = model.spec.in_channels * math.prod(model.spec.input_size)
    return max([inputs, *sizes])


def evaluation_rows(model: LoadedModel, *, graph: bool) -> int:
    """Rows per pass: `rows_per_chunk`'s, or more for a small model (see the module doc)."""
    rows = rows_per_chunk(model, graph=graph)
    wanted = min(MAX_ROWS, CHUNK_ELEMENTS // _largest_activation(model))
    # `rows_per_chunk` at budget * rows / wanted still answers `rows` exactly when `wanted`
    # rows fit the whole budget: the memory bound, read without its device cap
    while wanted > rows:
        budget = DEFAULT_MEMORY_BUDGET * rows // wanted
        if rows_per_chunk(model, graph=graph, budget=budget) >= rows:
            return wanted
        wanted //= 2
    return rows
