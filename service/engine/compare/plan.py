"""The validated plan of a two-model dataset comparison: pictures, layers, pooling, classes."""

from __future__ import annotations

from dataclasses import dataclass

from model_registry.catalog import LayerInfo
from model_registry.datasets import Dataset, match_classes
from model_registry.errors import InvalidInput, NotFound
from model_registry.registry import LoadedModel, ModelRegistry
from service.engine.compare.cka import StreamingCka
from service.engine.dataset.pictures import sample_indices
from service.engine.dataset.plan import BATCH_VALUES, MAX_BATCH

POOLS = ("mean", "flatten")
# What one comparison may hold for CKA: the accumulators of pool=mean, or the kept features
# plus the n x n Gram matrices of pool=flatten and debiased=true.
MEMORY_CAP_BYTES = 1 << 30


@dataclass(frozen=True)
class ComparePlan:
    """A validated comparison.

    Attributes:
        dataset: the dataset's name.
        indices: the dataset indices compared, ascending (all, or `limit` drawn with `seed`).
        layers_a, layers_b: each model's layers, in forward order.
        widths_a, widths_b: each layer's feature width after pooling.
        pool: 'mean' (spatial mean, [n, C]) or 'flatten' (the whole map, [n, C*H*W]).
        debiased: unbiased HSIC (Nguyen et al. 2021) instead of the biased one.
        drift: layers named alike in both lists with equal [C, H, W] shapes.
        class_map_a, class_map_b: each model's output index of each dataset class, or None.
        batch_size: pictures per forward pass.
    """

    dataset: str
    indices: tuple[int, ...]
    layers_a: tuple[str, ...]
    layers_b: tuple[str, ...]
    widths_a: tuple[int, ...]
    widths_b: tuple[int, ...]
    pool: str
    debiased: bool
    seed: int
    drift: tuple[str, ...]
    class_map_a: tuple[int, ...] | None
    class_map_b: tuple[int, ...] | None
    batch_size: int

    @property
    def streaming(self) -> bool:
        """Linear CKA on pooled features needs no per-picture features kept."""
        return self.pool == "mean" and not self.debiased


def pick_models(registry: ModelRegistry, names: list[str]) -> tuple[LoadedModel, LoadedModel]:
    """The two models of a comparison, or a 404 / 422 naming the field `models`."""
    if len(names) != 2:
        raise InvalidInput(
            f"models: name exactly two models, comma-separated (a,b); got {len(names)}",
            field="models",
        )
    found = []
    for name in names:
        try:
            found.append(registry.get(name))
        except NotFound as exc:
            raise NotFound(exc.detail, field="models", **exc.extra) from None
    return found[0], found[1]


def default_layers(model: LoadedModel) -> list[str]:
    """The top-level stages: top-level containers with a map output (resnet's layer1..4),
    or, for a flat model, every top-level module with a spatial map output."""
    top = [(name, bool(list(child.children()))) for name, child in model.module.named_children()]
    usable = [(n, c) for n, c in top if n in model.catalog and _map(model.catalog.get(n))]
    stages = [n for n, container in usable if container]
    return stages or [n for n, _ in usable if model.catalog.get(n).spatial]


def _map(info: LayerInfo) -> bool:
    return info.spatial_shape is not None and info.calls > 0 and info.members is None


def _layers(model: LoadedModel, names: list[str] | None, field: str) -> list[LayerInfo]:
    if names is not None and not names:
        raise InvalidInput(f"{field}: the list of layers is empty", field=field)
    infos = [model.catalog.get(name, field=field) for name in names or default_layers(model)]
    for info in infos:
        if not _map(info):
            raise InvalidInput(
                f"{field}: '{info.name}' has no single [C, H, W] or vector output (output "
                f"shape {info.output_shape}); see GET /v1/models/{model.name}/layers",
                field=field,
            )
    if not infos:
        raise InvalidInput(f"{field}: model '{model.name}' has no layer to compare", field=field)
    return sorted(infos, key=lambda info: info.order)


def _width(info: LayerInfo, pool: str) -> int:
    channels, height, width = info.spatial_shape or (0, 0, 0)
    return channels if pool == "mean" else channels * height * width


def plan_compare(
    model_a: LoadedModel,
    model_b: LoadedModel,
    dataset: Dataset,
    *,
    layers_a: list[str] | None,
    layers_b: list[str] | None,
    pool: str,
    debiased: bool,
    limit: int | None,
    seed: int,
) -> ComparePlan:
    """Check every option before any picture is read.

    Raises:
        NotFound: an unknown layer (404 naming it and the closest names).
        InvalidInput: an empty layer list, a layer without a map, too few pictures, or more
            memory than `MEMORY_CAP_BYTES` (the answer names the cap and the size asked).
    """
    if pool not in POOLS:
        raise InvalidInput(f"pool: '{pool}' is not one of {', '.join(POOLS)}", field="pool")
    infos_a = _layers(model_a, layers_a, "layers_a")
    infos_b = _layers(model_b, layers_b, "layers_b")
    size = len(dataset)
    count = size if limit is None else min(limit, size)
    least = 4 if debiased else 2
    if count < least:
        raise InvalidInput(
            f"limit: CKA needs at least {least} pictures; dataset '{dataset.name}' gives {count}",
            field="limit",
            minimum=least,
        )
    widths_a = [_width(i, pool) for i in infos_a]
    widths_b = [_width(i, pool) for i in infos_b]
    _check_memory(widths_a, widths_b, count, pool=pool, debiased=debiased)
    indices = sample_indices(size, count, seed)
    shapes_b = {i.name: i.spatial_shape for i in infos_b}
    drift = tuple(i.name for i in infos_a if shapes_b.get(i.name) == i.spatial_shape)
    return ComparePlan(
        dataset=dataset.name,
        indices=indices,
        layers_a=tuple(i.name for i in infos_a),
        layers_b=tuple(i.name for i in infos_b),
        widths_a=tuple(widths_a),
        widths_b=tuple(widths_b),
        pool=pool,
        debiased=debiased,
        seed=seed,
        drift=drift,
        class_map_a=_class_map(model_a, dataset),
        class_map_b=_class_map(model_b, dataset),
        batch_size=min(_batch(model_a), _batch(model_b)),
    )


def _check_memory(
    widths_a: list[int], widths_b: list[int], count: int, *, pool: str, debiased: bool
) -> None:
    if pool == "mean" and not debiased:
        needed = StreamingCka.bytes_needed(widths_a, widths_b)
    else:  # float32 features kept, then one float64 Gram matrix per layer
        layers = len(widths_a) + len(widths_b)
        needed = 4 * count * (sum(widths_a) + sum(widths_b)) + 8 * count * count * layers
    if needed > MEMORY_CAP_BYTES:
        raise InvalidInput(
            f"pool: CKA over {count} pictures at pool={pool}"
            f"{', debiased' if debiased else ''} needs {needed / 2**20:.0f} MiB, the cap is "
            f"{MEMORY_CAP_BYTES / 2**20:.0f} MiB; send a smaller limit, fewer or earlier "
            "layers, or pool=mean",
            field="pool",
            cap_bytes=MEMORY_CAP_BYTES,
            requested_bytes=needed,
        )


def _class_map(model: LoadedModel, dataset: Dataset) -> tuple[int, ...] | None:
    labels = [model.label(i) for i in range(model.spec.num_classes)]
    return match_classes(dataset.classes, labels)


def _batch(model: LoadedModel) -> int:
    height, width = model.spec.input_size
    return max(1, min(MAX_BATCH, BATCH_VALUES // (model.spec.in_channels * height * width)))
