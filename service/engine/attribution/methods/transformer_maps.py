"""Maps on a ViT's patch grid read from its attention: attention rollout and LeGrad.

Both read the whole model (no `layer`): every block's attention probabilities, recorded as
`attention.attention_pass` does, for torchvision's and timm's VisionTransformer.
"""

from __future__ import annotations

import torch

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.attention import VitParts, attention_pass, vit_parts
from service.engine.attribution.methods.base import CamInputs, CamMethod, register


def _parts(model: LoadedModel, method: str) -> VitParts:
    parts = vit_parts(model.module)
    if parts is None:
        raise InvalidInput(
            f"method: {method} reads the attention of a vision transformer's blocks "
            f"(torchvision's or timm's VisionTransformer); '{model.name}' is neither",
            field="method",
        )
    return parts


def rollout(probabilities: list[torch.Tensor], prefix: int) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, https://arxiv.org/abs/2005.00928): heads
    averaged, the identity added for the skip connection, rows normalized, the layers
    multiplied from the first; the class token's row over the patch tokens, [B, patches]."""
    joint = None
    for layer in probabilities:
        mixed = layer.float().mean(dim=1)
        mixed = mixed + torch.eye(mixed.shape[-1], device=mixed.device)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        joint = mixed if joint is None else mixed @ joint
    if joint is None:
        raise ValueError("rollout needs at least one attention layer")
    return joint[:, 0, prefix:]


class _TransformerMap(CamMethod):
    uses_layer = False

    def validate(self, model: LoadedModel, layer: LayerInfo) -> None:
        _parts(model, self.name)


@register
class Rollout(_TransformerMap):
    """The same map for every target: rollout does not depend on the class."""

    name = "rollout"
    summary = "attention rollout: the class token's attention through every block (ViTs)"
    listing_order = 900

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        parts = _parts(inputs.model, self.name)
        with torch.no_grad():
            run = attention_pass(inputs.model.module, parts, inputs.batch)
        maps = rollout(run.probabilities, parts.prefix).unflatten(-1, parts.grid)
        return maps[:, None].expand(-1, inputs.targets.shape[1], -1, -1).contiguous()


@register
class LeGrad(_TransformerMap):
    """LeGrad (Bosch et al. 2024, https://arxiv.org/abs/2404.03214) as torchcam's `LeGrad`:
    per block, the positive gradient of that block's class score (the final norm and head on
    its mean token) w.r.t. its attention probabilities, averaged over heads and queries, the
    prefix keys dropped; the blocks' maps averaged."""

    name = "legrad"
    summary = "LeGrad: gradients of each block's class score w.r.t. its attention (ViTs)"
    needs_gradients = True
    listing_order = 901

    def validate(self, model: LoadedModel, layer: LayerInfo) -> None:
        _parts(model, self.name)
        if model.spec.task != "classification":
            raise InvalidInput(
                f"method: legrad scores classes through the model's head; '{model.name}' is a "
                f"{model.spec.task} model",
                field="method",
            )

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        parts = _parts(inputs.model, self.name)
        images = inputs.batch.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            run = attention_pass(inputs.model.module, parts, images)
            classes = inputs.targets
            total = torch.zeros(*classes.shape, run.probabilities[0].shape[-1] - parts.prefix)
            total = total.to(images.device)
            for block, (tokens, attention) in enumerate(
                zip(run.tokens, run.probabilities, strict=True)
            ):
                scores = parts.project(tokens).gather(1, classes)  # [B, T]
                for slot in range(classes.shape[1]):
                    last = block == len(run.tokens) - 1 and slot == classes.shape[1] - 1
                    (grad,) = torch.autograd.grad(
                        scores[:, slot].sum(), attention, retain_graph=not last
                    )
                    total[:, slot] += grad.relu().mean(dim=(1, 2))[:, parts.prefix :].float()
        return (total / len(run.tokens)).unflatten(-1, parts.grid).detach()
