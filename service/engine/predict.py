"""Top-k class predictions."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel


@dataclass(frozen=True)
class Prediction:
    class_index: int
    label: str
    probability: float


def check_top_k(model: LoadedModel, top_k: int) -> None:
    if not 1 <= top_k <= model.spec.num_classes:
        raise InvalidInput(
            f"top_k must be between 1 and {model.spec.num_classes} for model '{model.name}'",
            field="top_k",
            valid_range=[1, model.spec.num_classes],
        )


def top_k_predictions(
    logits: torch.Tensor, model: LoadedModel, top_k: int
) -> list[list[Prediction]]:
    """Softmax over the logits [B, classes]; the `top_k` most probable classes per image."""
    probabilities = logits.float().softmax(dim=1)
    values, indices = probabilities.topk(top_k, dim=1)
    return [
        [
            Prediction(int(i), model.label(int(i)), float(p))
            for p, i in zip(row_p, row_i, strict=True)
        ]
        for row_p, row_i in zip(values.cpu(), indices.cpu(), strict=True)
    ]


def predict(model: LoadedModel, batch: torch.Tensor, top_k: int) -> list[list[Prediction]]:
    with torch.inference_mode():
        logits = model.module(batch)
    return top_k_predictions(logits, model, top_k)
