"""The targets an attribution answer lists: per image, the classes explained, with the box
(detection) or the region's size (segmentation). Shared by /cam, /gradients and
/attributions, whose engine results all carry `targets`, `boxes` and `regions`."""

from __future__ import annotations

from typing import Any, Protocol

from api_schemas.attributions import TargetItem
from model_registry.registry import LoadedModel


class Explained(Protocol):
    """What target_items reads of an engine result (frozen dataclasses: read-only)."""

    @property
    def targets(self) -> Any: ...

    @property
    def boxes(self) -> Any: ...

    @property
    def regions(self) -> Any: ...


def explained_label(model: LoadedModel, result: object, class_index: int) -> str:
    """The label of what a target explains: the unit ('layer:channel[@y,x]', where the
    class index is the unit's channel) or the class's label."""
    unit = getattr(result, "unit", None)
    return unit if unit is not None else model.label(class_index)


def target_items(model: LoadedModel, result: Explained) -> list[list[TargetItem]]:
    """Per image, the classes explained, with the box (detection) or region size; for a
    unit, its channel and the unit as written."""
    items = []
    for image, row in enumerate(result.targets):
        line = []
        for slot, class_index in enumerate(row):
            extra: dict[str, Any] = {}
            if result.boxes is not None:
                extra["box"] = [round(float(v), 2) for v in result.boxes[image, slot]]
            if result.regions is not None:
                extra["pixels"] = int(result.regions[image, slot].sum())
            if getattr(result, "unit", None) is not None:
                extra["unit"] = result.unit  # type: ignore[attr-defined]
            line.append(
                TargetItem(
                    class_index=int(class_index),
                    label=explained_label(model, result, int(class_index)),
                    **extra,
                )
            )
        items.append(line)
    return items
