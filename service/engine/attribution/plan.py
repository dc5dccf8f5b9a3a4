"""Validate an attribution request against the model and its catalog, before any computation.

Every error names the argument and says what would be accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.baselines import BASELINES, ZERO
from service.engine.attribution.cam_pass import NEAREST, UPSAMPLES
from service.engine.attribution.faithfulness import DEFAULT_STEPS, METRICS
from service.engine.attribution.layers import check_spatial_layers
from service.engine.attribution.methods.base import CamSampling
from service.engine.attribution.methods.registry import cam_method, gradient_method
from service.engine.attribution.sanity import parametrized_layers
from service.engine.attribution.target_objects import ClassRequest, TargetRequest
from service.engine.attribution.target_requests import parse_request
from service.engine.attribution.unit_target import (
    UnitRequest,
    check_layer_before_unit,
    check_unit_cam,
    check_unit_options,
)
from service.engine.checks import Bound, check_choice

DEFAULT_TOP_K = 5
# The fixed ranges of the options (the route models read them for OpenAPI).
METRIC_STEPS = Bound(2, 256)
STEPS = Bound(1, 1024)
SAMPLES = Bound(1, 1024)
NOISE = Bound(0.0, 10.0, strict_low=True)
# sscam passes samples x channels masked inputs; 64 keeps a 512-channel layer under 33k
CAM_SAMPLES = Bound(1, 64)


@dataclass(frozen=True)
class CamPlan:
    """A validated /cam request.

    Attributes:
        method: a registered CAM method (`methods.registry`).
        layers: layer names in forward order.
        targets: what is explained (`target_objects`): classes (default: each image's
            top-1), a segmentation class over a region, or a detection box.
        metrics: 'deletion' and/or 'insertion'.
        metric_steps: points on each deletion/insertion curve, minus one.
        randomize: top layers to re-initialize for the sanity check (0: none).
        top_k: predictions reported per image.
        normalize: min-max scale each map to [0, 1] (pytorch-grad-cam's output).
        eigen_smooth: each map is the first principal component of the method's weighted
            activations (pytorch-grad-cam's `eigen_smooth`).
        aug_smooth: the mean of the min-max scaled maps over flips and brightness factors
            (pytorch-grad-cam's `aug_smooth`; classifiers only).
        aggregate_layers: one map 'a+b' for all layers: the mean of their min-max scaled
            maps, scaled again (pytorch-grad-cam's multi-layer CAM).
        sampling: `samples`, `noise` and `seed` of sscam, iscam and smoothgradcam++.
    """

    method: str
    layers: tuple[str, ...]
    targets: TargetRequest | UnitRequest = ClassRequest()
    metrics: tuple[str, ...] = ()
    metric_steps: int = DEFAULT_STEPS
    randomize: int = 0
    top_k: int = DEFAULT_TOP_K
    normalize: bool = False
    eigen_smooth: bool = False
    aug_smooth: bool = False
    aggregate_layers: bool = False
    sampling: CamSampling = CamSampling()

    @property
    def several_targets(self) -> bool:
        return self.targets.count > 1


@dataclass(frozen=True)
class GradientPlan:
    """A validated /gradients request.

    Attributes:
        method: a registered gradient method.
        targets: what is explained, as for CamPlan.
        layer: the Grad-CAM layer of guided-gradcam (None otherwise).
        upsample: guided-gradcam's Grad-CAM at input size: 'nearest' (the ReLU'd map, as
            Captum's GuidedGradCam) or 'bilinear' (scaled to [0, 1], the paper's figures).
        steps, baseline: integrated gradients.
        samples, noise, seed: SmoothGrad.
        randomize, top_k: as for CamPlan.
    """

    method: str
    targets: TargetRequest | UnitRequest = ClassRequest()
    layer: str | None = None
    upsample: str = NEAREST
    steps: int = 32
    baseline: str = ZERO
    samples: int = 32
    noise: float = 0.15
    seed: int = 0
    randomize: int = 0
    top_k: int = DEFAULT_TOP_K

    @property
    def several_targets(self) -> bool:
        return self.targets.count > 1


def check_top_k(model: LoadedModel, top_k: int | None) -> int:
    """`top_k` predictions per image: 1 to the model's classes (default: 5 or fewer)."""
    classes = model.spec.num_classes
    if top_k is None:
        return min(DEFAULT_TOP_K, classes)
    if not 1 <= top_k <= classes:
        raise InvalidInput(
            f"top_k must be between 1 and {classes} for model '{model.name}'",
            field="top_k",
            valid_range=[1, classes],
        )
    return top_k


def check_metrics(
    model: LoadedModel, metrics: list[str] | None, metric_steps: int
) -> tuple[str, ...]:
    """The faithfulness metrics asked for, each once: known names, on classifiers only (they
    track a class probability), and `metric_steps` in range."""
    picked = tuple(dict.fromkeys(metrics or ()))
    for metric in picked:
        check_choice(metric, METRICS, field="metrics")
    if picked and model.spec.task != "classification":
        raise InvalidInput(
            f"metrics: deletion and insertion track a class probability; model "
            f"'{model.name}' is a {model.spec.task} model",
            field="metrics",
        )
    METRIC_STEPS.check_int("metric_steps", metric_steps)
    return picked


def check_randomize(model: LoadedModel, randomize: int) -> int:
    """Layers to re-initialize for the sanity check: 0 to the model's parametrized layers."""
    available = len(parametrized_layers(model)) if randomize else 0
    if randomize < 0 or randomize > available:
        raise InvalidInput(
            f"randomize: {randomize} layers to re-initialize, "
            f"model '{model.name}' has {available} with parameters",
            field="randomize",
            valid_range=[0, available],
        )
    return randomize


def plan_cam(
    model: LoadedModel,
    *,
    method: str,
    layers: list[str],
    targets: str | None = None,
    metrics: list[str] | None = None,
    metric_steps: int = DEFAULT_STEPS,
    randomize: int = 0,
    top_k: int | None = None,
    normalize: bool = False,
    eigen_smooth: bool = False,
    aug_smooth: bool = False,
    aggregate_layers: bool = False,
    region: str | None = None,
    box: str | None = None,
    detection: str | None = None,
    samples: int | None = None,
    noise: float | None = None,
    seed: int | None = None,
    unit: str | None = None,
) -> CamPlan:
    """Check a /cam request; layers default to the last spatial layer (for `unit`, the
    unit's layer)."""
    chosen = cam_method(method)
    sampling = _check_sampling(method, chosen.parameters, samples, noise, seed)
    if layers and not chosen.uses_layer:
        raise InvalidInput(
            f"layer: method={method} takes no layer, it reads the whole model; leave layer out",
            field="layer",
        )
    if aug_smooth and model.spec.task != "classification":
        raise InvalidInput(
            f"aug_smooth: flips the input and explains the same classes in every flip; the "
            f"regions and boxes of model '{model.name}' (a {model.spec.task} model) do not "
            "flip with it",
            field="aug_smooth",
        )
    request = parse_request(model, targets, region=region, box=box, detection=detection, unit=unit)
    if isinstance(request, UnitRequest) and not layers and chosen.uses_layer:
        layers = [request.layer]  # the default for a unit: its own layer
    infos = check_spatial_layers(model, layers)
    check_unit_cam(  # first: why a method cannot explain a unit beats what its layer lacks
        model, request, method, [info.name for info in infos] if chosen.uses_layer else []
    )
    for info in infos:
        chosen.validate(model, info)
    check_unit_options(request, metrics=bool(metrics), randomize=randomize, aug_smooth=aug_smooth)
    if aggregate_layers and len(infos) < 2:
        raise InvalidInput(
            "aggregate_layers: averages the maps of several layers; name two or more in "
            "`layer` (comma-separated)",
            field="aggregate_layers",
        )
    picked = check_metrics(model, metrics, metric_steps)
    return CamPlan(
        method=method,
        layers=tuple(info.name for info in infos),
        targets=request,
        metrics=picked,
        metric_steps=metric_steps,
        randomize=check_randomize(model, randomize),
        top_k=check_top_k(model, top_k),
        normalize=normalize,
        eigen_smooth=eigen_smooth,
        aug_smooth=aug_smooth,
        aggregate_layers=aggregate_layers,
        sampling=sampling,
    )


def _check_sampling(
    method: str,
    accepted: frozenset[str],
    samples: int | None,
    noise: float | None,
    seed: int | None,
) -> CamSampling:
    """The sampled CAMs' parameters; 422 for one the method does not take."""
    for field, value in (("samples", samples), ("noise", noise), ("seed", seed)):
        if value is not None and field not in accepted:
            takers = (
                "sscam, iscam and smoothgradcam++"
                if field == "samples"
                else ("sscam and smoothgradcam++")
            )
            raise InvalidInput(
                f"{field}: method={method} takes no {field} (only {takers} do); leave it out",
                field=field,
            )
    if samples is not None:
        CAM_SAMPLES.check_int("samples", samples)
    if noise is not None:
        NOISE.check("noise", noise)
    return CamSampling(samples=samples, noise=noise, seed=seed or 0)


def plan_gradients(
    model: LoadedModel,
    *,
    method: str,
    targets: str | None = None,
    layer: str | None = None,
    upsample: str = NEAREST,
    steps: int = 32,
    baseline: str = ZERO,
    samples: int = 32,
    noise: float = 0.15,
    seed: int = 0,
    randomize: int = 0,
    top_k: int | None = None,
    region: str | None = None,
    box: str | None = None,
    detection: str | None = None,
    unit: str | None = None,
) -> GradientPlan:
    """Check a /gradients request; `layer` is guided-gradcam's (default: the last spatial)."""
    chosen = gradient_method(method)
    request = parse_request(model, targets, region=region, box=box, detection=detection, unit=unit)
    check_unit_options(request, randomize=randomize)
    check_choice(baseline, BASELINES, field="baseline")
    check_choice(upsample, UPSAMPLES, field="upsample")
    STEPS.check_int("steps", steps)
    SAMPLES.check_int("samples", samples)
    NOISE.check("noise", noise)
    if isinstance(request, UnitRequest) and layer is None and method == "guided-gradcam":
        layer = request.layer  # the default for a unit: its own layer
    cam_layer = chosen.validate(model, layer)
    check_layer_before_unit(model, request, [cam_layer] if cam_layer else [], field="layer")
    return GradientPlan(
        method=method,
        targets=request,
        layer=cam_layer,
        upsample=upsample,
        steps=steps,
        baseline=baseline,
        samples=samples,
        noise=noise,
        seed=seed,
        randomize=check_randomize(model, randomize),
        top_k=check_top_k(model, top_k),
    )
