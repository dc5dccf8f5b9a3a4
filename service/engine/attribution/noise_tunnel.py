"""NoiseTunnel around any gradient method, as Captum's NoiseTunnel (Smilkov et al. 2017;
Adebayo et al. 2018 for VarGrad).

The wrapped method runs on `samples` noisy copies of each image, noise of standard
deviation `noise_level` x (max - min of that normalized image). The noise comes from a
CPU generator seeded with `seed`, image after image, an image's copies in one draw, as
`gradients.smoothgrad` draws them. The maps of the copies are then averaged (smoothgrad),
squared and averaged (smoothgrad_sq), or their variance taken (vargrad).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from model_registry.errors import InvalidInput
from service.engine.attribution.methods.base import GradientInputs, GradientMethod
from service.engine.attribution.target_objects import ClassTarget, Target
from service.engine.progress import report

SMOOTHGRAD = "smoothgrad"
SMOOTHGRAD_SQ = "smoothgrad_sq"
VARGRAD = "vargrad"
TUNNELS = (SMOOTHGRAD, SMOOTHGRAD_SQ, VARGRAD)


@dataclass(frozen=True)
class Tunnel:
    """kind: smoothgrad|smoothgrad_sq|vargrad; samples noisy copies; noise_level; seed."""

    kind: str
    samples: int = 32
    noise_level: float = 0.15
    seed: int = 0


def _repeated(target: Target, image: int, count: int) -> Target:
    if not isinstance(target, ClassTarget):
        raise InvalidInput(
            "noise: the noise tunnel explains class targets of a classifier", field="noise"
        )
    return ClassTarget(target.classes[image : image + 1].expand(count, -1))


def _fixed(target: Target) -> Callable[[object, slice], Target]:
    def choose(_output: object, part: slice) -> Target:
        return target.select(part)

    return choose


def tunnel(
    method: GradientMethod, inputs: GradientInputs, settings: Tunnel
) -> tuple[object, Target, torch.Tensor]:
    """(the output, the Target, smoothed maps [B, T, C, H, W]) of `method` in the tunnel."""
    batch = inputs.batch
    with torch.no_grad():
        output = inputs.model.module(batch)
    target = inputs.choose(output, slice(0, batch.shape[0]))
    generator = torch.Generator().manual_seed(settings.seed)
    out = []
    for image in range(batch.shape[0]):
        sigma = settings.noise_level * (batch[image].max() - batch[image].min()).cpu()
        noise = torch.randn((settings.samples, *batch.shape[1:]), generator=generator) * sigma
        noisy = batch[image][None] + noise.to(batch.device)
        fixed = _repeated(target, image, settings.samples)
        copies = replace(inputs, batch=noisy, choose=_fixed(fixed), fixed_targets=fixed)
        _, _, maps = method.compute(copies)  # [samples, T, C, H, W]
        mean = maps.mean(dim=0)
        if settings.kind == SMOOTHGRAD:
            out.append(mean)
        elif settings.kind == SMOOTHGRAD_SQ:
            out.append((maps * maps).mean(dim=0))
        else:
            out.append((maps * maps).mean(dim=0) - mean * mean)
        report(image + 1, batch.shape[0])
    return output, target, torch.stack(out)
