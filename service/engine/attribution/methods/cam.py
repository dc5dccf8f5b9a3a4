"""CAM (Zhou et al. 2016, https://arxiv.org/abs/1512.04150): the final linear layer's
weights of the target class over the maps that global average pooling feeds it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.layers import suitable_layers
from service.engine.attribution.methods.base import CamInputs, CamMethod, register
from service.engine.attribution.methods.gradient_cams import channel_map

_POOLING = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)
_HINT = "use method=gradcam, which equals CAM where CAM applies"


def classifier(model: LoadedModel) -> tuple[str, nn.Linear] | None:
    """The linear layer that produces the logits: the last leaf module to run, if it is one."""
    modules = dict(model.module.named_modules())
    for info in sorted(model.catalog, key=lambda lay: lay.order, reverse=True):
        module = modules[info.name]
        if info.calls == 0 or any(True for _ in module.children()):
            continue
        if isinstance(module, nn.Linear) and module.out_features == model.spec.num_classes:
            return info.name, module
        return None
    return None


def _classifier_or_refuse(model: LoadedModel) -> tuple[str, nn.Linear]:
    found = classifier(model)
    if found is None:
        raise InvalidInput(
            f"layer: method=cam needs a model ending in a linear classifier; {_HINT}",
            field="layer",
        )
    return found


@register
class ClassActivationMap(CamMethod):
    """Needs `layer -> global average pooling -> the final linear layer`: checked from the
    catalog before compute, and the pooling itself on the actual numbers."""

    name = "cam"
    summary = "CAM: the classifier's weights over the last maps before global pooling"
    listing_order = 60

    def validate(self, model: LoadedModel, layer: LayerInfo) -> None:
        name, linear = _classifier_or_refuse(model)
        channels = layer.spatial_shape[0] if layer.spatial_shape else 0
        if linear.in_features != channels:
            raise InvalidInput(
                "layer: method=cam needs a layer with as many channels as "
                f"'{name}' has inputs ({linear.in_features}); '{layer.name}' has {channels}. "
                f"Pick the last layer before global pooling, or {_HINT}",
                field="layer",
                suitable=suitable_layers(model)[-1:],
            )
        modules = dict(model.module.named_modules())
        fc_order = model.catalog.get(name).order
        for other in model.catalog:
            between = layer.order < other.order < fc_order and other.calls
            container = layer.name.startswith(f"{other.name}.") or any(
                True for _ in modules[other.name].children()
            )
            if between and not container and not isinstance(modules[other.name], _POOLING):
                raise InvalidInput(
                    f"layer: method=cam needs global average pooling right after "
                    f"'{layer.name}', but '{other.name}' ({other.type}) runs in between. "
                    f"Pick the last layer before pooling, or {_HINT}",
                    field="layer",
                    suitable=suitable_layers(model)[-1:],
                )

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        acts, logits = inputs.activations, inputs.logits.float()
        _, linear = _classifier_or_refuse(inputs.model)
        pooled = F.linear(
            acts.mean(dim=(2, 3)),
            linear.weight.to(acts.dtype),
            None if linear.bias is None else linear.bias.to(acts.dtype),
        )
        scale = float(logits.abs().max()) + 1e-6
        if not torch.allclose(pooled, logits.to(acts.dtype), rtol=1e-3, atol=1e-4 * scale):
            raise InvalidInput(
                f"layer: method=cam needs '{inputs.layer}' to reach the classifier through "
                "global average pooling only; it does not here. Use method=gradcam",
                field="layer",
            )
        return channel_map(
            linear.weight[inputs.targets].to(acts.dtype), acts, eigen=inputs.eigen_smooth
        )
