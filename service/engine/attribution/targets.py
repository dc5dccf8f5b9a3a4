"""Which class scores to explain: parse `target` (indices or labels) and resolve the default.

The score explained is always the class logit before softmax, as pytorch-grad-cam's
`ClassifierOutputTarget` and Captum's `target=` use it.
"""

from __future__ import annotations

import re

import torch

from model_registry.errors import InvalidInput, closest
from model_registry.registry import LoadedModel

MAX_TARGETS = 32
_INDEX = re.compile(r"^[+-]?\d{1,9}$")


def parse_targets(
    text: str | None, model: LoadedModel, *, field: str = "target"
) -> tuple[int, ...]:
    """Class indices from a comma-separated list of indices or labels, in the order given.

    An empty value means "the top-1 class of each image" and gives ().

    Raises:
        InvalidInput: an index out of range, an unknown label (with the closest labels),
            or more than MAX_TARGETS targets.
    """
    items = [item.strip() for item in (text or "").split(",") if item.strip()]
    if len(items) > MAX_TARGETS:
        raise InvalidInput(
            f"{field}: {len(items)} targets, at most {MAX_TARGETS} per request",
            field=field,
            max_targets=MAX_TARGETS,
        )
    return tuple(_one_target(item, model, field) for item in items)


def _one_target(item: str, model: LoadedModel, field: str) -> int:
    classes = model.spec.num_classes
    if _INDEX.match(item):
        index = int(item)
        if not 0 <= index < classes:
            raise InvalidInput(
                f"{field}: class {index} is out of range for model '{model.name}', "
                f"which has {classes} classes (valid: 0-{classes - 1})",
                field=field,
                valid_range=[0, classes - 1],
            )
        return index
    labels = model.labels
    if labels is None:
        raise InvalidInput(
            f"{field}: '{item}' is not a class index and model '{model.name}' has no labels; "
            f"use an index between 0 and {classes - 1}",
            field=field,
            valid_range=[0, classes - 1],
        )
    if item in labels:
        return labels.index(item)
    folded = [label.casefold() for label in labels]
    if item.casefold() in folded:
        return folded.index(item.casefold())
    suggestions = closest(item, labels)
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    raise InvalidInput(
        f"{field}: unknown label '{item}' for model '{model.name}'.{hint}",
        field=field,
        closest=suggestions,
    )


def resolve_targets(logits: torch.Tensor, requested: tuple[int, ...]) -> torch.Tensor:
    """int64 [B, T]: the requested classes for every image, or each image's top-1 class."""
    if not requested:
        return logits.argmax(dim=1, keepdim=True)
    index = torch.tensor(requested, dtype=torch.long, device=logits.device)
    return index.expand(logits.shape[0], -1)
