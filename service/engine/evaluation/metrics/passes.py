"""Batched forward passes over perturbed inputs, shared by the metrics."""

from __future__ import annotations

import numpy as np
import torch

from service.engine.evaluation.metrics.base import EvalBatch


def logits(batch: EvalBatch, inputs: torch.Tensor) -> torch.Tensor:
    """`batch.forward` over `inputs` [N, C, H, W], `batch.rows` at a time -> float [N, K]."""
    parts = []
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch.rows):
            parts.append(batch.forward(inputs[start : start + batch.rows]).float())
    return torch.cat(parts) if parts else torch.empty(0)


def target_scores(
    batch: EvalBatch, inputs: torch.Tensor, targets: torch.Tensor, *, softmax: bool
) -> np.ndarray:
    """The target's softmax probability (or logit) for each of `inputs` -> float64 [N]."""
    out = logits(batch, inputs)
    if softmax:
        out = out.softmax(dim=1)
    picked = out.gather(1, targets.to(out.device).long().view(-1, 1))[:, 0]
    return picked.double().cpu().numpy()
