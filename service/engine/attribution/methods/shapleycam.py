"""ShapleyCAM (Cai 2025, https://arxiv.org/abs/2501.06261): channel weights from the
gradient and the Hessian-vector product, a second-order Taylor reading of the Shapley
value, as pytorch-grad-cam's `ShapleyCAM`: w_c = mean over positions of (g - H A / 2)."""

from __future__ import annotations

import torch

from model_registry.errors import InvalidInput
from model_registry.layout import to_maps
from service.engine.attribution.graph import forward_to_layers
from service.engine.attribution.methods.base import CamInputs, register_cam
from service.engine.attribution.methods.gradient_cams import channel_map
from service.engine.attribution.target_objects import batch_rows


def _gradient_and_hvp(score: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """g - (d g / d A) . A / 2 for one target; the product is zero where the score is
    piecewise linear in A (ReLU networks scoring a logit), making it Grad-CAM."""
    (grad,) = torch.autograd.grad(score, output, create_graph=True, retain_graph=True)
    if not grad.requires_grad:
        return grad.detach()
    (hvp,) = torch.autograd.grad(
        grad, output, grad_outputs=output.detach(), retain_graph=True, allow_unused=True
    )
    return grad.detach() if hvp is None else (grad - 0.5 * hvp).detach()


@register_cam(
    "shapleycam",
    "ShapleyCAM: Grad-CAM with the Hessian-vector product's second-order term",
    order=17,
    needs_gradients=True,
)
def shapley_cam(inputs: CamInputs) -> torch.Tensor:
    """Its own pass, whose graph is kept for the second derivative (`create_graph`)."""
    run = forward_to_layers(
        inputs.model.module, inputs.batch, {inputs.layer: inputs.calls}, grad=True
    )
    output = run.activations[inputs.layer]
    scores = inputs.target.scores(run.logits, batch_rows(inputs.target))
    per_target = []
    for slot in range(scores.shape[1]):
        try:
            values = _gradient_and_hvp(scores[:, slot].sum(), output)
        except (RuntimeError, NotImplementedError) as exc:  # no double backward for an op
            raise InvalidInput(
                f"method: shapleycam needs second derivatives, and model "
                f"'{inputs.model.name}' runs an operation that has none after layer "
                f"'{inputs.layer}' (such as CPU flash attention); use gradcam",
                field="method",
            ) from exc
        per_target.append(to_maps(values, inputs.layout).float().mean(dim=(2, 3)))
    weights = torch.stack(per_target, dim=1)  # [B, T, C]
    return channel_map(weights, inputs.activations, eigen=inputs.eigen_smooth)
