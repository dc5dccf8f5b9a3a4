"""Gradient-free CAMs that perturb and re-run the model: ScoreCAM and AblationCAM.

Both need one forward pass per channel; rows are batched `rows` at a time (see `chunks`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model_registry.layout import MapLayout
from service.engine.attribution.target_objects import Target, as_target
from service.engine.capture import hooked
from service.engine.dense.outputs import output_rows
from service.engine.progress import report


def score_cam_weights(
    module: nn.Module,
    batch: torch.Tensor,
    maps: torch.Tensor,
    targets: Target | torch.Tensor,
    *,
    rows: int,
) -> torch.Tensor:
    """ScoreCAM channel weights (Wang et al. 2020, https://arxiv.org/abs/1910.01279) -> [B, T, C].

    Each channel, bilinearly upsampled to the input (align_corners=True, as
    pytorch-grad-cam) and min-max scaled, masks the input; the weight is the softmax over
    channels of the target logits of the masked inputs. Every target reuses the same
    masked passes. A constant channel masks everything to zero, so all of them share one
    forward pass of an all-zero input.

    Args:
        batch: [B, C_in, H, W]; maps: [B, C, h, w]; targets: a Target (or classes [B, T]).
    """
    target = as_target(targets)
    count, channels = maps.shape[:2]
    size = batch.shape[-2:]
    scores = torch.empty(count, channels, target.count, device=batch.device)
    flat = maps.flatten(2)
    live = flat.amax(dim=2) > flat.amin(dim=2)  # [B, C]
    images, chans = live.nonzero(as_tuple=True)
    with torch.inference_mode():
        for start in range(0, images.numel(), rows):
            img, ch = images[start : start + rows], chans[start : start + rows]
            up = F.interpolate(
                maps[img, ch][:, None], size=size, mode="bilinear", align_corners=True
            )[:, 0]
            low = up.amin(dim=(1, 2), keepdim=True)
            high = up.amax(dim=(1, 2), keepdim=True)
            masks = (up - low) / (high - low + 1e-8)
            output = module(batch[img] * masks[:, None])
            scores[img, ch] = target.scores(output, img).float()
            report(min(start + rows, images.numel()), images.numel())
        if not bool(live.all()):
            zero_output = module(torch.zeros_like(batch[:1]))
            for image in (~live).any(dim=1).nonzero()[:, 0].tolist():
                dead = (~live[image]).nonzero()[:, 0]
                one = torch.tensor([image], device=batch.device)
                scores[image, dead] = target.scores(zero_output, one).float()
    return scores.softmax(dim=1).transpose(1, 2)


def ablation_cam_weights(
    module: nn.Module,
    batch: torch.Tensor,
    *,
    layer: str,
    calls: int,
    output: torch.Tensor,
    layout: MapLayout,
    targets: Target | torch.Tensor,
    base_scores: torch.Tensor,
    rows: int,
) -> torch.Tensor:
    """AblationCAM channel weights (Desai & Ramaswamy 2020) -> [B, T, C].

    The layer's output with one channel ablated replaces the real one (in a forward hook,
    for the layer's last call); the weight is the relative drop of the target's score (the
    logit for a class), (score - ablated score) / score. The ablated value is
    pytorch-grad-cam's (see
    `ablation_values`): zero, as in the paper, where the layer's minimum is 0.

    Args:
        output: the layer's raw output [B, ...] from the first pass; layout: its layout.
        targets: a Target (or classes [B, T]).
        base_scores: the target scores of the first pass [B, T].
    """
    target = as_target(targets)
    count = batch.shape[0]
    channels = layout.channels
    ablated = torch.empty(count, channels, target.count, device=batch.device)
    with torch.inference_mode():
        for image in range(count):
            for start in range(0, channels, rows):
                chosen = torch.arange(start, min(channels, start + rows), device=batch.device)
                size = chosen.numel()
                replacement = output[image : image + 1].repeat(size, *([1] * (output.ndim - 1)))
                values = ablation_values(output[image], chosen).to(output.dtype)
                by_channel = replacement.movedim(layout.channel_dim, 1)
                by_channel[torch.arange(size), chosen] = values.view(-1, *[1] * (output.ndim - 2))
                answer = _run_with_output(
                    module, batch[image : image + 1], layer, calls, replacement
                )
                images = torch.full((size,), image, device=batch.device)
                ablated[image, chosen] = target.scores(answer, images).float()
                report(image * channels + start + size, count * channels)
    base = base_scores.float()[:, None, :]
    return ((base - ablated) / base).transpose(1, 2)


ABLATION_BATCH = 32  # pytorch-grad-cam's AblationCAM(batch_size=32) default
ABLATION_OFFSET = 1e7


def ablation_values(activations: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """The value each of `channels` is set to when ablated, as pytorch-grad-cam does it.

    Where the layer's minimum over this image is exactly 0 (a ReLU output) that is 0, the
    paper's ablation. Elsewhere pytorch-grad-cam writes min - 1e7 into the first row of each
    batch of 32 ablated copies and then, taking the minimum again after every row, min - k e7
    into the k-th; the same values are used here, so the maps agree with it on SiLU,
    Hardswish or BatchNorm outputs too.
    """
    low = activations.min()
    if bool(low == 0):
        return torch.zeros(channels.shape, dtype=torch.float64, device=channels.device)
    position = (channels % ABLATION_BATCH + 1).to(torch.float64)
    return low.double() - position * ABLATION_OFFSET


def _run_with_output(
    module: nn.Module, image: torch.Tensor, layer: str, calls: int, replacement: torch.Tensor
) -> Any:
    """The output when `layer`'s last call outputs `replacement` ([n, ...]) for one input image.

    The image is fed once: whatever runs after the layer sees n rows, and tensors computed
    before it (ResNet identities, ViT class tokens) broadcast from one row, which is exact
    because all n rows share the image. Architectures that cannot broadcast (a concat
    with an earlier tensor) raise or answer for one row (a detector's per-image lists),
    and then the image is fed n times.
    """
    size = replacement.shape[0]
    seen = {"calls": 0}

    def hook(_module: nn.Module, _inputs: Any, _output: Any) -> Any:
        seen["calls"] += 1
        return replacement if seen["calls"] == calls else None

    try:
        with hooked(module, {layer: hook}):
            output = module(image)
        if output_rows(output) == size:
            return output
    except (RuntimeError, AssertionError, IndexError, ValueError):
        pass
    seen["calls"] = 0
    with hooked(module, {layer: hook}):
        return module(image.expand(size, *image.shape[1:]))
