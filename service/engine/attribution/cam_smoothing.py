"""pytorch-grad-cam's smoothings: the mean CAM over test-time augmentations (`aug_smooth`)
and over several layers (its `aggregate_multi_layers`).

Its `BaseCAM` runs the CAM on the input flipped left-right or not, times each of 0.9, 1 and
1.1 (ttach's `HorizontalFlip` and `Multiply`, on the normalized tensor), min-max scales
each map, flips it back and averages the six. Targets stay those of the original input,
so every augmentation explains the same classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from service.engine.attribution.cam_pass import RawCams, unit_scale

FLIPS = (False, True)
FACTORS = (0.9, 1.0, 1.1)  # pytorch-grad-cam's default `tta.Multiply(factors=[0.9, 1, 1.1])`


def augmented(
    batch: torch.Tensor, original: RawCams, cams_of: Callable[[torch.Tensor], RawCams]
) -> RawCams:
    """The mean of the six augmentations' min-max scaled maps, per layer and target.

    Args:
        batch: the preprocessed inputs [B, C, H, W].
        original: the CAM run on `batch` itself (the unflipped, x1 augmentation).
        cams_of: runs the same CAM, with `original`'s targets, on an augmented batch.
    """
    sums = {name: unit_scale(maps) for name, maps in original.maps.items()}
    for flip in FLIPS:
        for factor in FACTORS:
            if not flip and factor == 1.0:
                continue  # that is `original`
            changed = batch.flip(-1) if flip else batch
            run = cams_of(changed * factor)
            for name, maps in run.maps.items():
                scaled = unit_scale(maps)
                sums[name] = sums[name] + (scaled.flip(-1) if flip else scaled)
    count = len(FLIPS) * len(FACTORS)
    maps = {name: total / count for name, total in sums.items()}
    return RawCams(original.logits, original.targets, maps, original.target)


def layer_mean(raw: RawCams) -> RawCams:
    """One map for all layers, named 'a+b': the mean of the layers' maps, min-max scaled,
    as pytorch-grad-cam's `aggregate_multi_layers`. The maps must come scaled at their own
    resolution (`run_cam(..., scaled=True)`), as pytorch-grad-cam scales them before resizing.
    """
    stacked = torch.stack(list(raw.maps.values()))
    name = "+".join(raw.maps)
    return RawCams(raw.logits, raw.targets, {name: unit_scale(stacked.mean(dim=0))}, raw.target)
