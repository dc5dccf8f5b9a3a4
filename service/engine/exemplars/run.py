"""A layer's units over a dataset, streamed in batches: the pictures that excite each
selected channel most, where in its map, and what input pixels that position sees.

Per batch the layer's output is captured (the forward pass stops there), read as
[B, C, H, W] maps (ViT tokens and Swin stages as the catalog lays them out), scored per
channel and merged into a running top-k (`topk.RunningTopK`); the batch's activations are
dropped. A job split into slices (issue 31) runs `exemplar_slice` per slice, anywhere, and
`merge_exemplars` once over their partials; `exemplars` is both in one pass. Runs on the
device thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model_registry.datasets import Dataset
from model_registry.errors import InvalidInput
from model_registry.layout import to_maps
from model_registry.registry import LoadedModel
from service.engine.capture import capture
from service.engine.dataset.pictures import picture_batches
from service.engine.exemplars.plan import ExemplarPlan
from service.engine.exemplars.receptive_field import Field, receptive_field
from service.engine.exemplars.topk import RunningTopK, merge, score_maps
from service.engine.images import preprocess
from service.engine.partials import Partial, total
from service.engine.progress import Progress, no_progress


@dataclass(frozen=True)
class Exemplars:
    """Each selected channel's top pictures.

    Attributes:
        channels: int64 [C], the channels, in the order asked.
        values: float32 [C, k], scores, largest first (ties: lower index first).
        indices: int64 [C, k], the dataset index of each.
        labels: int64 [C, k], its class (index into `classes`).
        positions: int64 [C, k, 2], (y, x) of the map's maximum.
        boxes: int64 [C, k, 4], [x0, y0, x1, y1) of that position's receptive field.
        images: pictures read (unreadable ones are skipped).
        field: the layer's receptive field table.
    """

    layer: str
    score: str
    classes: tuple[str, ...]
    channels: np.ndarray
    values: np.ndarray
    indices: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    boxes: np.ndarray
    images: int
    field: Field


def exemplars(
    model: LoadedModel,
    dataset: Dataset,
    plan: ExemplarPlan,
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Exemplars:
    """Stream the plan's pictures through the model up to the layer, in one pass: one
    slice of every picture, merged. `progress(done, total)` counts pictures after each
    batch and may raise `Cancelled` between batches."""
    part = exemplar_slice(
        model, dataset, plan, plan.indices, max_pixels=max_pixels, progress=progress
    )
    return merge_exemplars(model, dataset, plan, [part])


def exemplar_slice(
    model: LoadedModel,
    dataset: Dataset,
    plan: ExemplarPlan,
    indices: Sequence[int],
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """One slice of the plan's pictures (ascending dataset indices) to a partial: each
    channel's top-k of the slice (`topk.RunningTopK.partial`), `images` read and `skipped`
    (unreadable: logged and counted, never an error). `progress(done, len(indices))`."""
    info = model.catalog.get(plan.layer, field="layer")
    layout = info.map_layout
    if layout is None:
        raise RuntimeError(f"layer {plan.layer!r} has no map layout")
    channels = torch.tensor(plan.channels, dtype=torch.int64, device=model.device)
    running = RunningTopK(len(plan.channels), plan.k, model.device)
    read = 0
    for part in picture_batches(dataset, indices, plan.batch_size, max_pixels):
        if part.images:
            batch = preprocess(part.images, model.spec, model.device)
            output = capture(model.module, batch, {plan.layer: info.calls})[plan.layer]
            with torch.inference_mode():
                maps = to_maps(output, layout).index_select(1, channels)
                scores, positions = score_maps(maps, plan.score)
                where = torch.tensor(part.indices, dtype=torch.int64, device=model.device)
                running.add(scores, positions, where)
            read += len(part.indices)
        progress(part.end, len(indices))
    counts = {"images": np.asarray(read), "skipped": np.asarray(len(indices) - read)}
    return {**running.partial(), **counts}


def merge_exemplars(
    model: LoadedModel, dataset: Dataset, plan: ExemplarPlan, partials: Sequence[Partial]
) -> Exemplars:
    """The slices' partials (in slice order) to the answer of one pass over them all: the
    merged top-k (`topk.merge`), then labels and receptive-field boxes.

    Raises:
        InvalidInput: not one of the plan's pictures could be read.
    """
    read = int(total(partials, "images"))
    if read == 0:
        count = len(plan.indices)
        raise InvalidInput(f"dataset: none of {count} pictures could be read", field="dataset")
    layout = model.catalog.get(plan.layer, field="layer").map_layout
    if layout is None:
        raise RuntimeError(f"layer {plan.layer!r} has no map layout")
    field = receptive_field(model, plan.layer)
    return _finish(dataset, plan, merge(partials, plan.k), field, layout.width, read)


def _finish(
    dataset: Dataset,
    plan: ExemplarPlan,
    kept: Partial,
    field: Field,
    width: int,
    read: int,
) -> Exemplars:
    indices = kept["indices"]
    flat = kept["positions"]
    positions = np.stack([flat // width, flat % width], axis=-1)
    boxes = np.asarray(
        [[field.box(int(y), int(x)) for y, x in row] for row in positions], dtype=np.int64
    ).reshape(*indices.shape, 4)
    labels = np.vectorize(dataset.label, otypes=[np.int64])(indices) if indices.size else indices
    return Exemplars(
        layer=plan.layer,
        score=plan.score,
        classes=dataset.classes,
        channels=np.asarray(plan.channels, dtype=np.int64),
        values=kept["values"].astype(np.float32),
        indices=indices.astype(np.int64),
        labels=labels.astype(np.int64),
        positions=positions.astype(np.int64),
        boxes=boxes,
        images=read,
        field=field,
    )
