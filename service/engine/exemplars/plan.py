"""The validated plan of a dataset-exemplars job: layer, channels, k, score and pictures."""

from __future__ import annotations

from dataclasses import dataclass

from model_registry.datasets import Dataset
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.channels import check_channels, parse_channels
from service.engine.dataset.pictures import sample_indices
from service.engine.dataset.plan import BATCH_VALUES, MAX_BATCH

SCORES = ("max", "mean")
MAX_K = 64
# Exemplar entries one answer may list (channels x k): 2,048 channels at k = 128 / 2.
MAX_ENTRIES = 1 << 17


@dataclass(frozen=True)
class ExemplarPlan:
    """A validated request.

    Attributes:
        dataset: the dataset's name.
        layer: the layer, as the catalog names it.
        channels: the selected channel indices, in the order asked.
        k: exemplars per channel (at most the pictures read).
        score: 'max' (the channel's spatial max) or 'mean' (its spatial mean).
        indices: the dataset indices streamed, ascending (all, or `limit` drawn with `seed`).
        batch_size: pictures per forward pass.
    """

    dataset: str
    layer: str
    channels: tuple[int, ...]
    k: int
    score: str
    indices: tuple[int, ...]
    batch_size: int


def plan_exemplars(
    model: LoadedModel,
    dataset: Dataset,
    *,
    layer: str,
    channels: str,
    k: int,
    score: str,
    limit: int | None,
    seed: int,
) -> ExemplarPlan:
    """Check every option before any picture is read.

    Raises:
        NotFound: an unknown layer (404 with the closest names).
        InvalidInput: a layer without channels, `top:N` channels, a channel outside the
            layer, `k` or `score` out of range, or more entries than one answer lists.
    """
    if score not in SCORES:
        raise InvalidInput(
            f"score: '{score}' is not one of {', '.join(SCORES)}", field="score", choices=SCORES
        )
    if not 1 <= k <= MAX_K:
        raise InvalidInput(f"k: {k} is outside 1-{MAX_K}", field="k", valid_range=[1, MAX_K])
    info = model.catalog.get(layer, field="layer")
    layout = info.map_layout
    if layout is None or not info.calls or info.members is not None:
        why = model.catalog.not_one_tensor(info) or f"output shape {info.output_shape}"
        raise InvalidInput(
            f"layer: '{info.name}' has no channels to rank ({why}); pick a layer with a "
            f"[C, H, W], token or vector output from GET /v1/models/{model.name}/layers",
            field="layer",
        )
    selection = parse_channels(channels, field="channels")
    if selection.kind == "top":
        raise InvalidInput(
            "channels: top:N ranks channels per picture, which a dataset has no one of; "
            "send all, first:N, last:N or a list like 0,3,8-15",
            field="channels",
        )
    check_channels(selection, layout.channels, layer=info.name)
    if selection.kind == "list":
        picked = selection.indices()
    else:
        size = selection.size(layout.channels)
        start = layout.channels - size if selection.kind == "last" else 0
        picked = list(range(start, start + size))
    if len(picked) * k > MAX_ENTRIES:
        raise InvalidInput(
            f"channels: {len(picked)} channels x k={k} is {len(picked) * k} exemplars, more "
            f"than one answer lists ({MAX_ENTRIES}); select fewer channels or a smaller k",
            field="channels",
            cap=MAX_ENTRIES,
        )
    size = len(dataset)
    indices = sample_indices(size, size if limit is None else limit, seed)
    height, width = model.spec.input_size
    batch = max(1, min(MAX_BATCH, BATCH_VALUES // (model.spec.in_channels * height * width)))
    return ExemplarPlan(
        dataset=dataset.name,
        layer=info.name,
        channels=tuple(picked),
        k=k,
        score=score,
        indices=indices,
        batch_size=batch,
    )
