"""The methods an evaluation scores, each as one function: (model, inputs, targets) -> maps.

Any method of `/cam` or `/attributions` may be evaluated, with only its own parameters
(`options.<method>.<name>=value`), validated by the same plan functions those endpoints use
(`plan_cam`, `plan_input_attributions`). The maps are those endpoints' maps for fixed
targets (classes, or a segmentation region's or detection box's resolved Target): a CAM
[B, 1, H, W] (after ReLU, at the input size), an input attribution [B, C, H, W] on the
normalized input, as Quantus takes `a_batch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.chunks import DEFAULT_MEMORY_BUDGET, rows_per_chunk
from service.engine.attribution.input_attributions import (
    InputPlan,
    parameters,
    plan_input_attributions,
)
from service.engine.attribution.maps import cam_maps
from service.engine.attribution.methods.base import GradientInputs, GradientMethod
from service.engine.attribution.methods.input_base import InputMaps
from service.engine.attribution.methods.registry import (
    cam_methods,
    input_method,
    input_methods,
)
from service.engine.attribution.noise_tunnel import tunnel
from service.engine.attribution.plan import CamPlan, plan_cam
from service.engine.attribution.target_objects import ClassTarget, Target

CAM = "cam"
INPUT = "input"


@dataclass(frozen=True)
class Explainer:
    """One method, validated: its name, kind (cam or input), the parameters as used and its
    plan."""

    method: str
    kind: str
    parameters: dict[str, Any]
    plan: CamPlan | InputPlan

    def maps(
        self, model: LoadedModel, inputs: torch.Tensor, targets: torch.Tensor | Target
    ) -> torch.Tensor:
        """float32 [B, A, H, W] maps for `inputs` [B, C, H, W] (normalized) of `targets`:
        a class per input (int64 [B]), or a Target resolved for these inputs (one each)."""
        fixed = (
            targets
            if isinstance(targets, Target)
            else ClassTarget(targets.to(inputs.device).long().view(-1, 1))
        )
        if isinstance(self.plan, CamPlan):
            plan = self.plan
            raw = cam_maps(
                model,
                inputs,
                plan.method,
                plan.layers,
                plan.targets,
                fixed_targets=fixed,
                sampling=plan.sampling,
            )
            return next(iter(raw.maps.values()))[:, :1].float()
        return _input_maps(model, inputs, self.plan, fixed).values[:, 0].float()


def method_names() -> list[str]:
    """Every method an evaluation takes: the CAMs, then the input-space methods."""
    names = [m.name for m in cam_methods()]
    return names + [m.name for m in input_methods() if m.name not in names]


def cam_parameters(method: str) -> dict[str, Any]:
    """A CAM's own parameters with defaults, as GET /v1/methods lists them."""
    chosen = next(m for m in cam_methods() if m.name == method)
    listed: dict[str, Any] = {"layer": None} if chosen.uses_layer else {}
    optional = {"samples": None, "noise": None, "seed": 0}
    return listed | {k: v for k, v in optional.items() if k in chosen.parameters}


def method_parameters(method: str) -> dict[str, Any]:
    """The parameters `options.<method>.<name>` may set, with their defaults."""
    if method in {m.name for m in cam_methods()}:
        return cam_parameters(method)
    return parameters(input_method(method))


def plan_explainer(model: LoadedModel, method: str, given: Mapping[str, Any]) -> Explainer:
    """`_plan` with an error about one of the method's parameters named as the client sent
    it: options.<method>.<parameter>."""
    names = method_names()
    if method not in names:
        raise InvalidInput(
            f"methods: '{method[:80]}' is not one of {', '.join(names)}",
            field="methods",
            choices=names,
        )
    try:
        return _plan(model, method, given)
    except InvalidInput as exc:
        if exc.field is None or exc.field not in method_parameters(method):
            raise
        where = f"options.{method}.{exc.field}"
        raise InvalidInput(f"options.{method}.{exc.detail}", field=where, **exc.extra) from None


def _plan(model: LoadedModel, method: str, given: Mapping[str, Any]) -> Explainer:
    """Validate one known method and its own parameters (values already typed).

    Raises:
        InvalidInput: a parameter the method does not take (naming the method and its
            parameters), or one out of range.
    """
    allowed = method_parameters(method)
    for name in given:
        if name not in allowed:
            takes = ", ".join(allowed) or "no parameters"
            raise InvalidInput(
                f"options.{method}.{name}: not a parameter of method '{method}' (it takes {takes})",
                field=f"options.{method}.{name}",
                method=method,
                choices=list(allowed),
            )
    if method in {m.name for m in cam_methods()}:
        layer = given.get("layer")
        layers = [] if layer is None else [part for part in str(layer).split(",") if part]
        rest = {k: v for k, v in given.items() if k != "layer"}
        cam = plan_cam(model, method=method, layers=layers, **rest)
        if len(cam.layers) != 1:
            raise InvalidInput(
                f"options.{method}.layer: an evaluation scores one map per image; name one layer",
                field=f"options.{method}.layer",
            )
        return Explainer(method, CAM, {"layer": cam.layers[0], **rest}, cam)
    plan = plan_input_attributions(model, method=method, given=dict(given))
    return Explainer(method, INPUT, plan.parameters(), plan)


def _input_maps(
    model: LoadedModel, inputs: torch.Tensor, plan: InputPlan, fixed: Target
) -> InputMaps:
    """As `/attributions` computes them (`compute_input_attributions`), for fixed targets."""
    chosen = input_method(plan.method)

    def same(_output: Any, part: slice) -> Target:
        return fixed.select(part)

    work = GradientInputs(
        model=model,
        batch=inputs,
        request=plan.targets,
        options=plan.options,
        choose=same,
        fixed_targets=fixed,
        rows=rows_per_chunk(model, graph=chosen.needs_gradients),
        budget=DEFAULT_MEMORY_BUDGET,
    )
    answer: Any
    if plan.tunnel is not None and isinstance(chosen, GradientMethod):
        answer = tunnel(chosen, work, plan.tunnel)
    else:
        answer = chosen.compute(work)
    return answer if isinstance(answer, InputMaps) else InputMaps(*answer)
