"""Batched forward passes over perturbed inputs, shared by the metrics."""

from __future__ import annotations

import numpy as np
import torch

from service.engine.evaluation.metrics.base import EvalBatch


def logits(batch: EvalBatch, inputs: torch.Tensor) -> torch.Tensor:
    """`batch.forward` over `inputs` [N, C, H, W], `batch.rows` at a time -> float [N, K]
    (a classifier's)."""
    parts = []
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch.rows):
            parts.append(batch.forward(inputs[start : start + batch.rows]).float())
    return torch.cat(parts) if parts else torch.empty(0)


def target_scores(
    batch: EvalBatch, inputs: torch.Tensor, images: torch.Tensor, *, softmax: bool
) -> np.ndarray:
    """The explained score (`EvalBatch.score`: with `softmax`, a class's probability) of each
    of `inputs` [N, C, H, W], input n a variant of image `images[n]`, `batch.rows` at a time
    -> float64 [N]."""
    parts = []
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch.rows):
            part = slice(start, start + batch.rows)
            parts.append(batch.score(inputs[part], images[part], probability=softmax))
    return torch.cat(parts).double().cpu().numpy() if parts else np.empty(0)
