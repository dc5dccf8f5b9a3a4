"""Channel contributions for the device thread: per request, and averaged over a dataset."""

from __future__ import annotations

from collections.abc import Sequence

from model_registry.datasets import Dataset
from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.attribution.contributions import (
    ContributionPlan,
    Contributions,
    compute_contributions,
)
from service.engine.attribution.dataset_contributions import (
    ClassChannelMatrix,
    DatasetContributionPlan,
    contribution_slice,
    merge_contributions,
)
from service.engine.partials import Partial
from service.engine.progress import Progress, no_progress
from service.workers.answer import Answer
from service.workers.tasks import decode_tensor


def contributions_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: ContributionPlan,
    *,
    fmt: str,
    max_pixels: int,
) -> Answer[Contributions]:
    """Contributions of the uploads: npy float32 [B, C] ([B, T, C] for several targets), or
    nothing for json (the route builds it from the result)."""
    batch = decode_tensor(model, uploads, max_pixels=max_pixels)
    result = compute_contributions(model, batch, plan)
    if fmt != "npy":
        return Answer(result, b"", "application/json")
    values = result.values if result.several_targets else result.values[:, 0]
    return Answer(result, encode.npy_bytes(values), encode.NPY_MEDIA_TYPE)


def dataset_contribution_slice_task(
    model: LoadedModel,
    dataset: Dataset,
    plan: DatasetContributionPlan,
    indices: Sequence[int],
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """One slice of the plan's pictures: per label, the contributions' sums and the counts
    (a job's shard: progress may cancel)."""
    return contribution_slice(
        model, dataset, plan, indices, max_pixels=max_pixels, progress=progress
    )


def dataset_contributions_merge_task(partials: Sequence[Partial]) -> ClassChannelMatrix:
    """The class x channel matrix of every slice's partial."""
    return merge_contributions(partials)
