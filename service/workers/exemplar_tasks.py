"""Dataset-exemplar work for the device thread: the running top-k over the pictures, and
for png one unit's montage drawn from it."""

from __future__ import annotations

from model_registry.datasets import Dataset
from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.exemplars.montage import montage
from service.engine.exemplars.plan import ExemplarPlan
from service.engine.exemplars.run import Exemplars, exemplars
from service.engine.progress import Progress, no_progress
from service.workers.answer import Answer


def exemplars_task(
    model: LoadedModel,
    dataset: Dataset,
    plan: ExemplarPlan,
    *,
    fmt: str,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Answer[Exemplars]:
    """json: the result alone (the route encodes it); png: the montage of the plan's one
    channel."""
    result = exemplars(model, dataset, plan, max_pixels=max_pixels, progress=progress)
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
