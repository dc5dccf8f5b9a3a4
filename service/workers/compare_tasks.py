"""Model comparison work for the device thread: both models run there, one after the other,
on the same pictures."""

from __future__ import annotations

from model_registry.datasets import Dataset
from model_registry.registry import LoadedModel
from service.engine.compare.outcome import Comparison
from service.engine.compare.plan import ComparePlan
from service.engine.compare.run import compare
from service.engine.progress import Progress, no_progress


def compare_dataset_task(
    model_a: LoadedModel,
    model_b: LoadedModel,
    dataset: Dataset,
    plan: ComparePlan,
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Comparison:
    """Both models over the plan's pictures.

    Raises:
        RuntimeError: the models live on different devices; one device thread runs both.
    """
    if model_a.device != model_b.device:
        raise RuntimeError(f"models {model_a.name!r} and {model_b.name!r} are on different devices")
    return compare(model_a, model_b, dataset, plan, max_pixels=max_pixels, progress=progress)
