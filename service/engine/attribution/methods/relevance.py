"""`lrp`: layer-wise relevance propagation (Bach et al. 2015) with zennit's composites."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.lrp import RULES, input_bounds, lrp, unruled_layer
from service.engine.attribution.methods.base import GradientInputs
from service.engine.attribution.methods.input_base import InputMaps, InputMethod, register_input
from service.engine.checks import check_choice
from service.engine.progress import report


@dataclass(frozen=True)
class LrpOptions:
    """rule: zennit's composite (epsilon-plus-flat, epsilon-gamma-box, epsilon-alpha2-beta1,
    epsilon-plus)."""

    rule: str = "epsilon-plus-flat"


@register_input
class Lrp(InputMethod):
    """zennit's composites on the model canonized as zennit does (BatchNorm merged; ResNet
    blocks' skip sums given their own rule), run on a canonized copy of the model kept per model
    and device (`canonized.py`)."""

    name = "lrp"
    summary = "layer-wise relevance propagation, zennit's composites on the canonized model (rule)"
    family = "propagation"
    needs_gradients = True
    listing_order = 190
    Options = LrpOptions

    def validate(self, model: LoadedModel, options: LrpOptions) -> None:
        check_choice(options.rule, RULES, field="rule")
        if model.spec.task == "detection":
            raise InvalidInput(
                f"method: lrp has no rule for a detector's box selection (non-maximum "
                f"suppression); '{model.name}' is a detection model",
                field="method",
            )
        unruled = unruled_layer(model.module)
        if unruled is not None:
            layer, kind = unruled
            raise InvalidInput(
                f"method: lrp has no rule for layer '{layer}' ({kind}) of '{model.name}'; "
                "zennit's composites cover convolutions, linear layers, batch norms, "
                "activations, pooling and ResNet skip sums",
                field="method",
            )

    def compute(self, inputs: GradientInputs) -> InputMaps:
        batch, spec = inputs.batch, inputs.model.spec
        with torch.no_grad():
            output = inputs.model.module(batch)
        target = inputs.choose(output, slice(0, batch.shape[0]))
        count, per_image = target.classes.shape
        images = torch.arange(count, device=batch.device).repeat_interleave(per_image)
        slots = torch.arange(per_image, device=batch.device).repeat(count)
        bounds = input_bounds(spec.mean, spec.std, batch.shape[1])
        values = torch.zeros(images.numel(), *batch.shape[1:], device=batch.device)
        for first in range(0, images.numel(), inputs.rows):
            img, slot = images[first : first + inputs.rows], slots[first : first + inputs.rows]

            def score(out: torch.Tensor, img: torch.Tensor = img, slot: torch.Tensor = slot):
                return target.scores(out, img).gather(1, slot[:, None])[:, 0]

            values[first : first + inputs.rows] = lrp(
                inputs.model.module, batch[img], score, rule=inputs.options.rule, bounds=bounds
            )
            report(first + img.numel(), images.numel())
        shape = (*target.classes.shape, *batch.shape[1:])
        return InputMaps(output, target, values.view(shape))
