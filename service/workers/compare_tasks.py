"""Model comparison work for the device thread: both models run there, one after the other,
on the same pictures."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from model_registry.datasets import Dataset
from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.attribution.explain import CamResult
from service.engine.attribution.input_attributions import InputPlan, InputResult
from service.engine.attribution.pictures import NEGATIVE, POSITIVE, Look
from service.engine.attribution.plan import CamPlan
from service.engine.compare.plan import ComparePlan
from service.engine.compare.run import compare_slice
from service.engine.partials import Partial
from service.engine.progress import Progress, no_progress
from service.workers.answer import Answer
from service.workers.attribution_tasks import attribution_task


def compare_slice_task(
    model_a: LoadedModel,
    model_b: LoadedModel,
    dataset: Dataset,
    plan: ComparePlan,
    indices: Sequence[int],
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """Both models over the pictures `indices`, a slice of the plan's: its partial.

    Raises:
        RuntimeError: the models live on different devices; one device thread runs both.
    """
    if model_a.device != model_b.device:
        raise RuntimeError(f"models {model_a.name!r} and {model_b.name!r} are on different devices")
    return compare_slice(
        model_a, model_b, dataset, plan, indices, max_pixels=max_pixels, progress=progress
    )


GAP = 8  # white pixels between the two pictures


def one_map(values: np.ndarray, view: str) -> np.ndarray:
    """An attribution [B, C, H, W] as one map per picture [B, H, W], its channels reduced
    as the png's view draws them: the max of the positive part, of the negative part, or of
    |values| (heatmap, and the signed gradient picture)."""
    if view == POSITIVE:
        return np.clip(values, 0, None).max(axis=1)
    if view == NEGATIVE:
        return np.clip(-values, 0, None).max(axis=1)
    return np.abs(values).max(axis=1)


Result = CamResult | InputResult


def compare_pictures_task(
    models: tuple[LoadedModel, LoadedModel],
    uploads: Sequence[bytes],
    plans: tuple[CamPlan | InputPlan, CamPlan | InputPlan],
    *,
    fmt: str,
    look: Look,
    max_pixels: int,
) -> Answer[tuple[Result, Result]]:
    """Each model's own /cam or /attributions answer for the uploads, joined: the two png
    pictures side by side (json embeds that png), or the two npy maps stacked as
    [2, B, H, W] (an attribution's channels reduced by `one_map`)."""
    picture = "npy" if fmt == "npy" else "png"
    answers = [
        attribution_task(model, uploads, plan, fmt=picture, look=look, max_pixels=max_pixels)
        for model, plan in zip(models, plans, strict=True)
    ]
    results = (answers[0].result, answers[1].result)
    if picture == "npy":
        maps = [np.load(io.BytesIO(a.body), allow_pickle=False) for a in answers]
        reduced = [
            one_map(m, look.view) if isinstance(plan, InputPlan) else m
            for m, plan in zip(maps, plans, strict=True)
        ]
        stacked = np.stack(reduced)
        return Answer(results, encode.npy_bytes(stacked), encode.NPY_MEDIA_TYPE)  # type: ignore[arg-type]
    left, right = (np.asarray(Image.open(io.BytesIO(a.body)).convert("RGB")) for a in answers)
    height = max(left.shape[0], right.shape[0])
    joined = np.full((height, left.shape[1] + GAP + right.shape[1], 3), 255, dtype=np.uint8)
    joined[: left.shape[0], : left.shape[1]] = left
    joined[: right.shape[0], left.shape[1] + GAP :] = right
    return Answer(results, encode.png_bytes(joined), encode.PNG_MEDIA_TYPE)  # type: ignore[arg-type]
