"""`lrp`: layer-wise relevance propagation (Bach et al. 2015) with zennit's composites."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.lrp import (
    RULES,
    input_bounds,
    relevance,
    ruled_copy,
    unruled_layer,
)
from service.engine.attribution.methods.base import GradientInputs
from service.engine.attribution.methods.input_base import InputMaps, InputMethod, register_input
from service.engine.attribution.target_objects import Target
from service.engine.checks import check_choice
from service.engine.dense.outputs import detached
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
        """The reported output is the ruled copy's (the model's up to float rounding: its
        BatchNorms merged): where one pass holds the batch and each image has one target,
        that pass's forward also picks the target, so the model runs once."""
        batch, spec, rows = inputs.batch, inputs.model.spec, inputs.rows
        bounds = input_bounds(spec.mean, spec.std, batch.shape[1])
        whole = batch.shape[0] <= rows
        rule = inputs.options.rule
        with (
            ruled_copy(inputs.model.module, batch.device, rule=rule, bounds=bounds) as ruled,
            torch.enable_grad(),
        ):
            x = batch.detach().requires_grad_(whole)
            traced = ruled(x)  # with the rules' graph where `whole`, else none
            output = detached(traced)
            target = inputs.choose(output, slice(0, batch.shape[0]))
            count, per_image = target.classes.shape
            images = torch.arange(count, device=batch.device).repeat_interleave(per_image)
            slots = torch.arange(per_image, device=batch.device).repeat(count)
            if whole and per_image == 1:
                values = relevance(x, target.scores(traced, images)[:, 0])
                report(images.numel(), images.numel())
            else:
                del traced
                values = self._chunked(ruled, batch, target, images, slots, rows)
        shape = (*target.classes.shape, *batch.shape[1:])
        return InputMaps(output, target, values.view(shape))

    @staticmethod
    def _chunked(
        ruled: torch.nn.Module,
        batch: torch.Tensor,
        target: Target,
        images: torch.Tensor,
        slots: torch.Tensor,
        rows: int,
    ) -> torch.Tensor:
        """Relevance for every (image, slot), `rows` of them per pass."""
        values = torch.zeros(images.numel(), *batch.shape[1:], device=batch.device)
        for first in range(0, images.numel(), rows):
            img, slot = images[first : first + rows], slots[first : first + rows]
            x = batch[img].detach().requires_grad_(True)
            scores = target.scores(ruled(x), img).gather(1, slot[:, None])[:, 0]
            values[first : first + rows] = relevance(x, scores)
            report(first + img.numel(), images.numel())
        return values
