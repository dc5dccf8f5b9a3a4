"""FullGrad (Srinivas & Fleuret 2019, https://arxiv.org/abs/1905.00780): |input x its
gradient| plus, for every convolution and batch norm with a bias, |bias x the gradient of
its output|, as pytorch-grad-cam's `FullGrad`. It takes no layer: every bias is used."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.graph import gradients_of
from service.engine.attribution.methods.base import CamInputs, CamMethod, register
from service.engine.attribution.methods.eigencam import eigen_maps
from service.engine.attribution.target_objects import batch_rows
from service.engine.capture import hooked

_BIASED = (nn.Conv2d, nn.BatchNorm2d)


def _biased(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, layer in module.named_modules():
        if isinstance(layer, _BIASED) and layer.bias is not None:
            yield name, layer


def biased_layers(module: nn.Module) -> list[str]:
    """The names of the layers with a bias, read without any tensor math: a plan runs on the
    event loop's thread, and a torch kernel called there (MKL's sqrt over a batch norm's
    channels) starts a second OpenMP team that slows every later pass of the device thread."""
    return [name for name, _ in _biased(module)]


def bias_layers(module: nn.Module) -> dict[str, torch.Tensor]:
    """Name -> the bias each channel of the layer's output gets: a convolution's own, a batch
    norm's folded with its statistics, beta - mean * gamma / sqrt(var + eps)."""
    biases = {}
    for name, layer in _biased(module):
        bias = layer.bias.detach()
        if isinstance(layer, nn.BatchNorm2d) and layer.running_mean is not None:
            scale = layer.weight.detach() / torch.sqrt(layer.running_var + layer.eps)
            bias = bias - layer.running_mean * scale
        biases[name] = bias.float()
    return biases


def _unit(maps: torch.Tensor) -> torch.Tensor:
    """Each map [..., h, w] min-max scaled to [0, 1]."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    shifted = maps - low
    return shifted / (shifted.amax(dim=(-2, -1), keepdim=True) + 1e-7)


def _scaled(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Each map [..., h, w] min-max scaled, then bilinearly resized (pytorch-grad-cam's
    `scale_accross_batch_and_channels`)."""
    return _resized(_unit(maps), size)


def _scaled_sum(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`_scaled(maps, size).sum(dim=2, keepdim=True)` for maps [B, T, C, h, w]: resizing is
    linear, so the channels are summed at their own resolution and resized once, which is
    what pytorch-grad-cam computes with a C-th of the resizing (512 channels a layer at the
    end of a ResNet)."""
    return _resized(_unit(maps).sum(dim=2, keepdim=True), size)


def _resized(unit: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps [..., h, w] bilinearly resized to `size` (align_corners=False, as cv2.resize)."""
    if unit.shape[-2:] == size:
        return unit
    flat = unit.flatten(0, -3)[:, None]
    resized = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return resized[:, 0].unflatten(0, unit.shape[:-2])


@register
class FullGrad(CamMethod):
    """Its own pass: a graph from the input through every bias layer."""

    name = "fullgrad"
    summary = "FullGrad: |input x gradient| plus |bias x gradient| of every bias (no layer)"
    needs_gradients = True
    uses_layer = False
    listing_order = 95

    def validate(self, model: LoadedModel, layer: LayerInfo) -> None:
        if model.spec.task == "detection":
            raise InvalidInput(
                "method: fullgrad needs a graph through the whole model; a detection model's "
                "proposals cut it",
                field="method",
            )
        if not biased_layers(model.module):
            raise InvalidInput(
                f"method: fullgrad sums |bias x gradient| over every Conv2d and BatchNorm2d "
                f"with a bias; model '{model.name}' has none",
                field="method",
            )

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        module, size = inputs.model.module, tuple(inputs.batch.shape[-2:])
        biases = bias_layers(module)
        outputs: dict[str, torch.Tensor] = {}

        def recorder(name: str):
            def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
                outputs[name] = output
                return output.clone()  # in-place ops further down change the clone

            return hook

        images = inputs.batch.detach().clone().requires_grad_(True)
        with torch.enable_grad(), hooked(module, {name: recorder(name) for name in biases}):
            logits = module(images)
        scores = inputs.target.scores(logits, batch_rows(inputs.target))
        names = list(outputs)
        grads = gradients_of(scores, [images, *(outputs[n] for n in names)])
        # [B, T, C_in + layers, H, W]: per input channel, then per layer summed over channels
        parts = [_scaled((grads[0] * images.detach()[:, None]).abs().float(), size)]
        for name, grad in zip(names, grads[1:], strict=True):
            terms = (grad.float() * biases[name][:, None, None]).abs()
            parts.append(_scaled_sum(terms, size))
        stacked = torch.cat(parts, dim=2)
        if not inputs.eigen_smooth:
            return stacked.sum(dim=2)
        # pytorch-grad-cam projects the maps at 1/8 of the input size, then scales them up
        small = (size[0] // 8, size[1] // 8)
        projected = eigen_maps(_scaled(stacked, small))
        return _scaled(projected[:, :, None], size)[:, :, 0]
