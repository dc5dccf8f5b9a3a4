"""Attributions to the input pixels (`/attributions`): plan a request, then compute it.

One endpoint serves the gradient methods (validated by `plan_gradients` and computed by
their registered classes, exactly as `/gradients` does) and the methods of `input_base`
(perturbation methods), each with only its own parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.chunks import DEFAULT_MEMORY_BUDGET, rows_per_chunk
from service.engine.attribution.explain import (
    GradientResult,
    classifier_predictions,
    drawn_targets,
    to_numpy,
    unit_text,
)
from service.engine.attribution.input_trust import TrustRequest, check_trust, trust_checks
from service.engine.attribution.methods.base import GradientInputs, GradientMethod
from service.engine.attribution.methods.input_base import (
    GRADIENT_FAMILY,
    InputMaps,
    InputMethod,
)
from service.engine.attribution.methods.registry import input_method, input_methods
from service.engine.attribution.methods.sampling_methods import check_samples
from service.engine.attribution.noise_tunnel import TUNNELS, Tunnel, tunnel
from service.engine.attribution.plan import (
    DEFAULT_TOP_K,
    GradientPlan,
    check_top_k,
    plan_gradients,
)
from service.engine.attribution.target_objects import ClassRequest, Target, TargetRequest
from service.engine.attribution.target_requests import parse_request
from service.engine.attribution.unit_target import (
    UnitRequest,
    check_unit_method,
    check_unit_options,
    unit_as_output,
)
from service.engine.checks import check_choice, check_finite
from service.engine.insight.cost import FORWARD_AND_BACKWARD, forward_flops


@dataclass(frozen=True)
class InputPlan:
    """A validated `/attributions` request: the method, its own options, the targets."""

    method: str
    options: Any
    targets: TargetRequest | UnitRequest = ClassRequest()
    top_k: int = DEFAULT_TOP_K
    tunnel: Tunnel | None = None
    trust: TrustRequest = TrustRequest()

    @property
    def several_targets(self) -> bool:
        return self.targets.count > 1

    def parameters(self) -> dict[str, Any]:
        """The method's parameters as used (and the noise tunnel's)."""
        used = dict(vars(self.options))
        if self.tunnel is not None:
            noise = self.tunnel
            used.update(noise=noise.kind, samples=noise.samples, seed=noise.seed)
            used["noise_level"] = noise.noise_level
        return used


@dataclass(frozen=True)
class InputResult(GradientResult):
    """GradientResult plus the feature mask int64 [B, H, W] of mask-based methods and the
    deletion/insertion AUCs [B, T] when asked."""

    mask: np.ndarray | None = None
    deletion: np.ndarray | None = None
    insertion: np.ndarray | None = None


@dataclass(frozen=True)
class MethodEntry:
    """One input-space method as `GET /v1/methods` lists it."""

    name: str
    family: str
    needs_gradients: bool
    summary: str
    parameters: dict[str, Any]


def family(method: GradientMethod | InputMethod) -> str:
    return method.family if isinstance(method, InputMethod) else GRADIENT_FAMILY


def parameters(method: GradientMethod | InputMethod) -> dict[str, Any]:
    """The method's parameters with their defaults (a gradient method's are /gradients')."""
    if isinstance(method, InputMethod):
        return method.defaults()
    defaults = {item.name: item.default for item in fields(GradientPlan)}
    return {item.name: defaults[item.name] for item in fields(method.Options)}


def method_entries() -> list[MethodEntry]:
    """Every input-space method with its family and parameters, from the registry."""
    return [
        MethodEntry(m.name, family(m), m.needs_gradients, m.summary, parameters(m))
        for m in input_methods()
    ]


def plan_input_attributions(
    model: LoadedModel,
    *,
    method: str,
    given: Mapping[str, Any],
    targets: str | None = None,
    region: str | None = None,
    box: str | None = None,
    detection: str | None = None,
    top_k: int | None = None,
    metrics: list[str] | None = None,
    metric_steps: int | None = None,
    randomize: int = 0,
    unit: str | None = None,
) -> InputPlan:
    """Check a request: `given` holds the method parameters the client sent (and only them);
    metrics, metric_steps and randomize are the trust checks (`input_trust`)."""
    chosen = input_method(method)
    allowed = parameters(chosen)
    given, noise = _tunnel(chosen, given, allowed)
    for name in given:
        if name not in allowed:
            takes = ", ".join(allowed) or "no parameters"
            raise InvalidInput(
                f"{name}: not a parameter of method '{method}' (it takes {takes})",
                field=name,
                method=method,
            )
    trust = check_trust(model, metrics=metrics, randomize=randomize, **_steps(metric_steps))
    if noise is not None and model.spec.task != "classification":
        raise InvalidInput(
            f"noise: the noise tunnel explains classes; '{model.name}' is a "
            f"{model.spec.task} model",
            field="noise",
        )
    if not isinstance(chosen, InputMethod):
        plan = plan_gradients(
            model,
            method=method,
            targets=targets,
            top_k=top_k,
            region=region,
            box=box,
            detection=detection,
            unit=unit,
            **given,
        )
        check_unit_options(plan.targets, metrics=bool(metrics), randomize=randomize)
        return InputPlan(
            method, chosen.options(plan), plan.targets, plan.top_k, tunnel=noise, trust=trust
        )
    request = parse_request(model, targets, region=region, box=box, detection=detection, unit=unit)
    check_unit_options(request, metrics=bool(metrics), randomize=randomize)
    check_unit_method(request, method)
    options = chosen.Options(**{**allowed, **given})
    chosen.validate(model, options)
    return InputPlan(method, options, request, check_top_k(model, top_k), trust=trust)


def _steps(metric_steps: int | None) -> dict[str, int]:
    return {} if metric_steps is None else {"metric_steps": metric_steps}


def _tunnel(
    chosen: GradientMethod | InputMethod, given: Mapping[str, Any], allowed: Mapping[str, Any]
) -> tuple[dict[str, Any], Tunnel | None]:
    """`noise` is a number for methods that take one (smoothgrad, gradient-shap); for the
    other gradient methods it puts them in a noise tunnel with samples, noise_level, seed."""
    rest = dict(given)
    if "noise" not in rest:
        return rest, None
    if "noise" in allowed:
        try:
            rest["noise"] = float(rest["noise"])
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"noise: {chosen.name} takes a number, got '{rest['noise']}'", field="noise"
            ) from exc
        return rest, None
    if isinstance(chosen, InputMethod):
        return rest, None  # answered as a parameter the method does not take
    kind = rest.pop("noise")
    check_choice(kind, TUNNELS, field="noise")
    settings = Tunnel(
        kind, **{k: rest.pop(k) for k in ("samples", "seed", "noise_level") if k in rest}
    )
    check_samples(settings.samples)
    check_finite("noise_level", settings.noise_level, low=0.0, high=10.0)
    return rest, settings


def estimate_seconds(
    model: LoadedModel, plan: InputPlan, *, images: int, flops_per_second: float
) -> float:
    """Rough run time: the method's forward passes (backward passes count 2 each)."""
    chosen = input_method(plan.method)
    if not isinstance(chosen, InputMethod):  # as /gradients, bounded by steps, samples <= 1024
        copies = plan.tunnel.samples if plan.tunnel is not None else 0
        return images * copies * FORWARD_AND_BACKWARD * forward_flops(model) / flops_per_second
    passes = chosen.forward_passes(model, plan.options)
    per_pass = FORWARD_AND_BACKWARD if chosen.needs_gradients else 1.0
    return images * passes * per_pass * forward_flops(model) / flops_per_second


def compute_input_attributions(
    model: LoadedModel,
    batch: torch.Tensor,
    plan: InputPlan,
    *,
    inputs: np.ndarray,
    budget: int = DEFAULT_MEMORY_BUDGET,
) -> InputResult:
    """The maps [B, T, C, H, W] of every image and target on the model input."""
    chosen = input_method(plan.method)

    def choose(output: Any, part: slice) -> Any:
        return plan.targets.resolve(output, batch[part])

    graph = chosen.needs_gradients
    work = GradientInputs(
        model=model,
        batch=batch,
        request=plan.targets,
        options=plan.options,
        choose=choose,
        fixed_targets=None,
        rows=rows_per_chunk(model, graph=graph, budget=budget),
        budget=budget,
    )

    def run(work: GradientInputs) -> InputMaps:
        answer: Any
        if plan.tunnel is not None and isinstance(chosen, GradientMethod):
            answer = tunnel(chosen, work, plan.tunnel)
        else:
            answer = chosen.compute(work)
        return answer if isinstance(answer, InputMaps) else InputMaps(*answer)

    def rerun(copy: LoadedModel, fixed: Target) -> torch.Tensor:
        def same(_output: Any, part: slice) -> Target:
            return fixed.select(part)

        return run(replace(work, model=copy, choose=same, fixed_targets=fixed)).values

    with unit_as_output(model.module, plan.targets):
        maps = run(work)
    trust = trust_checks(model, batch, maps.values, maps.target, plan.trust, rerun)
    drawn = drawn_targets(maps.target)
    return InputResult(
        method=plan.method,
        values=to_numpy(maps.values),
        targets=maps.target.classes.cpu().numpy().astype(np.int64),
        several_targets=plan.several_targets,
        predictions=classifier_predictions(
            model, maps.output, plan.top_k, batch.shape[0], unit=unit_text(plan.targets) is not None
        ),
        unit=unit_text(plan.targets),
        inputs=inputs,
        mask=None if maps.mask is None else maps.mask.cpu().numpy().astype(np.int64),
        randomized=trust.randomized,
        rank_correlation=trust.rank_correlation,
        deletion=trust.deletion,
        insertion=trust.insertion,
        boxes=drawn["boxes"],
        regions=drawn["regions"],
    )
