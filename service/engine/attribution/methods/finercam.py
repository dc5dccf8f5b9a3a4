"""Finer-CAM (Zhang et al. 2025, https://arxiv.org/abs/2501.11309): Grad-CAM of the target's
score against the classes the model finds most similar, as pytorch-grad-cam's `FinerCAM`
with its defaults (the three classes whose logits are closest, alpha 1)."""

from __future__ import annotations

import torch

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.layout import to_maps
from model_registry.registry import LoadedModel
from service.engine.attribution.graph import forward_to_layers, gradients_of
from service.engine.attribution.methods.base import CamInputs, CamMethod, register
from service.engine.attribution.methods.gradient_cams import channel_map

COMPARISONS = 3  # pytorch-grad-cam's comparison_categories=[1, 2, 3]
ALPHA = 1.0


def finer_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B, T]: per target, sum_k p_k (z_t - alpha z_k) / sum_k p_k over the `COMPARISONS`
    classes whose logits are nearest the target's (pytorch-grad-cam's FinerWeightedTarget;
    the softmax weights stay in the graph, as there)."""
    main = logits.gather(1, targets)  # [B, T]
    distance = (logits[:, None, :] - main[..., None]).abs()  # [B, T, K]
    distance = distance.scatter(2, targets[..., None], -1.0)  # the target itself sorts first
    nearest = distance.argsort(dim=2)[..., 1 : COMPARISONS + 1]  # [B, T, COMPARISONS]
    rows = torch.arange(len(logits), device=logits.device)[:, None, None]
    others = logits[rows, nearest]
    weights = torch.softmax(logits, dim=1)[rows, nearest]
    return (weights * (main[..., None] - ALPHA * others)).sum(2) / weights.sum(2)


@register
class FinerCam(CamMethod):
    """Its own pass with a graph from the layer, since its score is not the target's logit."""

    name = "finercam"
    summary = "Finer-CAM: Grad-CAM of the target against its three most similar classes"
    needs_gradients = True
    listing_order = 15

    def validate(self, model: LoadedModel, layer: LayerInfo) -> None:
        if model.spec.task != "classification" or model.spec.num_classes <= COMPARISONS:
            raise InvalidInput(
                f"method: finercam compares a class with the {COMPARISONS} classes nearest it "
                f"in logits; model '{model.name}' is a {model.spec.task} model with "
                f"{model.spec.num_classes} classes",
                field="method",
            )

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        run = forward_to_layers(
            inputs.model.module, inputs.batch, {inputs.layer: inputs.calls}, grad=True
        )
        output = run.activations[inputs.layer]
        scores = finer_scores(run.logits.float(), inputs.targets)
        (grads,) = gradients_of(scores, [output])
        count, per_image = inputs.targets.shape
        grads = to_maps(grads.flatten(0, 1), inputs.layout).unflatten(0, (count, per_image))
        weights = grads.float().mean(dim=(3, 4))
        return channel_map(weights, inputs.activations, eigen=inputs.eigen_smooth)
