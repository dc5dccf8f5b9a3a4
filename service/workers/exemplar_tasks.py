"""Dataset-exemplar work for the device thread, as the slices of a sharded job: one slice's
running top-k, and the merge of every slice's, with for png one unit's montage drawn from it
(its pictures read again, on whichever replica merges)."""

from __future__ import annotations

from collections.abc import Sequence

from model_registry.datasets import Dataset
from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.exemplars.montage import montage
from service.engine.exemplars.plan import ExemplarPlan
from service.engine.exemplars.run import Exemplars, exemplar_slice, merge_exemplars
from service.engine.partials import Partial
from service.engine.progress import Progress, no_progress
from service.workers.answer import Answer


def exemplar_slice_task(
    model: LoadedModel,
    dataset: Dataset,
    plan: ExemplarPlan,
    indices: Sequence[int],
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """One slice of the plan's pictures: each channel's top-k and the pictures read."""
    return exemplar_slice(model, dataset, plan, indices, max_pixels=max_pixels, progress=progress)


def exemplars_merge_task(
    model: LoadedModel,
    dataset: Dataset,
    plan: ExemplarPlan,
    partials: Sequence[Partial],
    *,
    fmt: str,
    max_pixels: int,
) -> Answer[Exemplars]:
    """json: the merged result alone (the route encodes it); png: the montage of the plan's
    one channel."""
    result = merge_exemplars(model, dataset, plan, partials)
    if fmt != "png":
        return Answer(result, b"", "application/json")
    boxes = [tuple(int(v) for v in box) for box in result.boxes[0]]
    picture = montage(
        dataset,
        model.spec,
        [int(i) for i in result.indices[0]],
        boxes,  # type: ignore[arg-type]
        max_pixels=max_pixels,
    )
    return Answer(result, encode.png_bytes(picture), encode.PNG_MEDIA_TYPE)
