"""What a perturbed part of the input is replaced with: the baselines of perturbation methods."""

from __future__ import annotations

import torch

from model_registry.spec import ModelSpec
from service.engine.attribution.baselines import BASELINES, baseline

MEAN = "mean"
PERTURBATION_BASELINES = (*BASELINES, MEAN)


def reference(batch: torch.Tensor, kind: str, spec: ModelSpec) -> torch.Tensor:
    """[B, C, H, W] replacement values for each image.

    - zero, black, blur: as integrated gradients' baselines (`baselines.baseline`);
    - mean: each channel of each image replaced by its mean over the image.
    """
    if kind == MEAN:
        return batch.mean(dim=(2, 3), keepdim=True).expand_as(batch).clone()
    return baseline(batch, kind, spec)
