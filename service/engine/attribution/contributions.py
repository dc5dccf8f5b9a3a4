"""Channel contributions: how much each channel of a layer adds to a target's score.

- grad-x-act: the gradient of the score w.r.t. the layer's output times that output,
  summed over the channel's positions (Captum's `LayerGradientXActivation` summed over
  positions);
- conductance: Captum's `LayerConductance` summed over positions (Dhamdhere et al. 2018,
  https://arxiv.org/abs/1805.12233): along the path from a baseline to the input, sampled
  at the `steps + 1` Gauss-Legendre nodes Captum uses, the sum over consecutive nodes of
  the gradient at one node times the change of the layer's output to the next.

A layer is read as maps (`model_registry.layout`): a ViT's token layer sums over its patch
tokens (the class token is not a position of the map), a vector layer has one position.
The target is any of /cam's (`target_objects`); the graph starts at the layer
(`graph.forward_to_layers`), so nothing before it is differentiated, and the convolutions
before it run on packed weights (`packed_convolution`, equal to torch's to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.fast_paths.packed_convolution import packed_weights
from model_registry.layout import MapLayout, to_maps
from model_registry.registry import LoadedModel
from service.engine.attribution.baselines import BASELINES, ZERO, baseline
from service.engine.attribution.chunks import DEFAULT_MEMORY_BUDGET, rows_per_chunk
from service.engine.attribution.graph import forward_to_layers, gradients_of
from service.engine.attribution.plan import STEPS
from service.engine.attribution.target_objects import (
    ClassRequest,
    Target,
    TargetRequest,
    batch_rows,
)
from service.engine.attribution.target_requests import parse_request
from service.engine.attribution.unit_target import (
    UnitRequest,
    check_layer_before_unit,
    unit_as_output,
)
from service.engine.checks import Bound, check_choice
from service.engine.progress import report

GRAD_X_ACT = "grad-x-act"
CONDUCTANCE = "conductance"
METHODS = (GRAD_X_ACT, CONDUCTANCE)
DEFAULT_TOP = 10
TOP = Bound(1, 65_536)


@dataclass(frozen=True)
class ContributionPlan:
    """A validated contributions request.

    Attributes:
        layer: the layer whose channels are scored; `calls` how often it runs per pass.
        layout: how its output reads as [C, h, w] maps.
        method: 'grad-x-act' or 'conductance'.
        targets: what is explained, as for /cam (class, region, box).
        steps, baseline: conductance's path (Captum's `n_steps`, `baselines`).
        top: channels listed per image and target in json.
    """

    layer: str
    calls: int
    layout: MapLayout
    method: str = GRAD_X_ACT
    targets: TargetRequest = ClassRequest()
    steps: int = 32
    baseline: str = ZERO
    top: int = DEFAULT_TOP

    @property
    def several_targets(self) -> bool:
        return self.targets.count > 1


@dataclass(frozen=True)
class Contributions:
    """Per image and target, each channel's contribution.

    Attributes:
        values: float32 [B, T, C].
        targets: int64 [B, T], the class each target explains.
        boxes, regions: what was explained on a detection or segmentation model.
    """

    layer: str
    method: str
    values: np.ndarray
    targets: np.ndarray
    several_targets: bool
    boxes: np.ndarray | None = None
    regions: np.ndarray | None = None
    unit: str | None = None  # the unit explained, 'layer:channel[@y,x]'


def channel_layer(model: LoadedModel, name: str | None, *, field: str = "layer") -> LayerInfo:
    """The layer `name`, whose output must read as [C, h, w] maps; 422 naming the layers
    that do (the last ten) otherwise."""
    if not name:
        raise InvalidInput(
            f"{field}: name the layer whose channels are scored (GET /v1/models/"
            f"{model.name}/layers)",
            field=field,
            suitable=_with_channels(model),
        )
    info = model.catalog.get(name, field=field)
    if info.map_layout is None or info.calls == 0:
        suitable = _with_channels(model)
        several = model.catalog.not_one_tensor(info)
        reason = several or (
            f"'{info.name}' has no channels (output shape {info.output_shape}); a layer whose "
            f"output reads as [C, H, W], [C] or ViT tokens does, such as {', '.join(suitable)}"
        )
        raise InvalidInput(f"{field}: {reason}", field=field, suitable=suitable)
    return info


def _with_channels(model: LoadedModel) -> list[str]:
    return [lay.name for lay in model.catalog if lay.map_layout is not None and lay.calls > 0][-10:]


def plan_contributions(
    model: LoadedModel,
    *,
    layer: str | None,
    method: str = GRAD_X_ACT,
    targets: str | None = None,
    region: str | None = None,
    box: str | None = None,
    detection: str | None = None,
    steps: int = 32,
    baseline: str = ZERO,
    top: int = DEFAULT_TOP,
    unit: str | None = None,
) -> ContributionPlan:
    """Check a contributions request against the model before any compute; `unit` makes a
    unit (`unit_target`) the target, whose layer must not run before `layer`."""
    check_choice(method, METHODS, field="method")
    check_choice(baseline, BASELINES, field="baseline")
    STEPS.check_int("steps", steps)
    TOP.check_int("top", top)
    request = parse_request(model, targets, region=region, box=box, detection=detection, unit=unit)
    info = channel_layer(model, layer)
    check_layer_before_unit(model, request, [info.name], field="layer")
    layout = info.map_layout
    assert layout is not None  # channel_layer refused layers without one
    return ContributionPlan(
        layer=info.name,
        calls=info.calls,
        layout=layout,
        method=method,
        targets=request,
        steps=steps,
        baseline=baseline,
        top=min(top, layout.channels),
    )


def _per_channel(
    plan: ContributionPlan, activations: torch.Tensor, grads: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations [R, C, h, w], gradients [R, T, C, h, w]) read as maps, in float32."""
    rows, count = grads.shape[0], grads.shape[1]
    maps = to_maps(activations.detach(), plan.layout).float()
    grad_maps = to_maps(grads.flatten(0, 1), plan.layout).unflatten(0, (rows, count)).float()
    return maps, grad_maps


def _grad_x_act(
    model: LoadedModel, batch: torch.Tensor, plan: ContributionPlan, fixed: Target | None
) -> tuple[Target, torch.Tensor]:
    run = forward_to_layers(model.module, batch, {plan.layer: plan.calls}, grad=True)
    target = fixed if fixed is not None else plan.targets.resolve(run.logits, batch)
    output = run.activations[plan.layer]
    (grads,) = gradients_of(target.scores(run.logits, batch_rows(target)), [output])
    maps, grad_maps = _per_channel(plan, output, grads)
    return target, (grad_maps * maps[:, None]).sum(dim=(-2, -1))


def _alphas(steps: int, device: torch.device) -> torch.Tensor:
    """Captum's LayerConductance path: the `steps + 1` Gauss-Legendre nodes in (0, 1)."""
    nodes, _ = np.polynomial.legendre.leggauss(steps + 1)
    return torch.tensor(0.5 * (1 + nodes), dtype=torch.float32, device=device)


def _path_sum(
    model: LoadedModel,
    plan: ContributionPlan,
    target: Target,
    start: torch.Tensor,
    delta: torch.Tensor,
    images: torch.Tensor,
    alphas: torch.Tensor,
) -> torch.Tensor:
    """[b, T, C]: sum over consecutive nodes of `alphas` of gradient x layer-output change,
    for `images` (one pass of b x nodes rows)."""
    count, points = images.numel(), alphas.numel()
    shape = (-1, *([1] * (start.ndim - 1)))
    path = start[images, None] + alphas.view(1, *shape) * delta[images, None]
    rows = images.repeat_interleave(points)
    run = forward_to_layers(model.module, path.flatten(0, 1), {plan.layer: plan.calls}, grad=True)
    output = run.activations[plan.layer]
    (grads,) = gradients_of(target.scores(run.logits, rows), [output])
    maps, grad_maps = _per_channel(plan, output, grads)
    maps = maps.unflatten(0, (count, points))
    grad_maps = grad_maps.unflatten(0, (count, points))
    steps = (maps[:, 1:] - maps[:, :-1])[:, :, None]  # [b, n - 1, 1, C, h, w]
    return (grad_maps[:, :-1] * steps).sum(dim=(1, -2, -1))


def _conductance(
    model: LoadedModel,
    batch: torch.Tensor,
    plan: ContributionPlan,
    fixed: Target | None,
    budget: int,
) -> tuple[Target, torch.Tensor]:
    """Whole paths of several images per pass while they fit `budget`; otherwise one
    image's path in parts of `rows` nodes that overlap by one node, so every consecutive
    pair of nodes is summed once."""
    if fixed is not None:
        target = fixed
    else:
        with torch.no_grad():
            target = plan.targets.resolve(model.module(batch), batch)
    alphas = _alphas(plan.steps, batch.device).to(batch.dtype)
    points = alphas.numel()
    start = baseline(batch, plan.baseline, model.spec)
    delta = batch - start
    rows = rows_per_chunk(model, graph=True, budget=budget)
    per_chunk = max(1, rows // points)
    span = max(2, min(points, rows))
    nodes = range(0, points - 1, span - 1)
    groups = range(0, batch.shape[0], per_chunk)
    parts, done = [], 0
    for first in groups:
        images = torch.arange(first, min(first + per_chunk, batch.shape[0]), device=batch.device)
        total = torch.zeros(())
        for node in nodes:
            total = total + _path_sum(
                model, plan, target, start, delta, images, alphas[node : node + span]
            )
            done += 1
            report(done, len(groups) * len(nodes))  # a job may cancel between passes
        parts.append(total)
    return target, torch.cat(parts)


def channel_contributions(
    model: LoadedModel,
    batch: torch.Tensor,
    plan: ContributionPlan,
    *,
    fixed_targets: Target | None = None,
    budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[Target, torch.Tensor]:
    """(the Target, contributions float32 [B, T, C]) of the plan's layer for `batch`.

    Args:
        batch: preprocessed inputs [B, C, H, W] on the model's device.
        fixed_targets: the Target to explain instead of resolving the plan's request (the
            dataset job explains each image's label).
        budget: device memory (bytes) one chunk of conductance's path may take.
    """
    with packed_weights(), unit_as_output(model.module, plan.targets):
        # packed: the passes before the layer, which need no graph
        if plan.method == CONDUCTANCE:
            return _conductance(model, batch, plan, fixed_targets, budget)
        return _grad_x_act(model, batch, plan, fixed_targets)


def compute_contributions(
    model: LoadedModel, batch: torch.Tensor, plan: ContributionPlan
) -> Contributions:
    """The plan's contributions for `batch`, as numpy arrays."""
    target, values = channel_contributions(model, batch, plan)
    boxes, regions = target.boxes_drawn(), target.regions_drawn()
    return Contributions(
        layer=plan.layer,
        method=plan.method,
        values=values.detach().cpu().numpy().astype(np.float32, copy=False),
        targets=target.classes.cpu().numpy().astype(np.int64),
        several_targets=plan.several_targets,
        boxes=None if boxes is None else boxes.detach().float().cpu().numpy(),
        regions=None if regions is None else regions.cpu().numpy(),
        unit=plan.targets.text if isinstance(plan.targets, UnitRequest) else None,
    )
