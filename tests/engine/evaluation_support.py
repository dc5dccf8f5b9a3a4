"""Shared pieces of the evaluation metric tests: digits batches, their Grad-CAMs, EvalBatch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from model_registry.registry import LoadedModel
from service.engine.attribution.maps import cam_maps
from service.engine.evaluation.metrics import EvalBatch
from service.samples import digit_samples
from tests.tiny_models import model_batch


def digits_inputs(model: LoadedModel, count: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` digits as model inputs, and their labels."""
    samples = digit_samples(count)
    batch = model_batch(model, list(samples.values()))
    labels = [int(name.rpartition("label")[2].split(".")[0]) for name in samples]
    return batch, torch.tensor(labels)


def forward_of(model: LoadedModel):
    def forward(inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model.module(inputs)

    return forward


def gradcam(model: LoadedModel, inputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Grad-CAM of relu3 at input resolution, float32 [B, 1, H, W]."""
    raw = cam_maps(model, inputs, "gradcam", ("relu3",), (), fixed_targets=targets[:, None])
    return raw.maps["relu3"].float().cpu().numpy()


def eval_batch(model: LoadedModel, inputs, targets, maps, **more: Any) -> EvalBatch:
    return EvalBatch(
        inputs=inputs,
        targets=targets,
        maps=np.asarray(maps, np.float32),
        forward=forward_of(model),
        **more,
    )
