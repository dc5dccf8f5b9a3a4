"""Validate an attribution request against the model and its catalog, before any computation.

Every error names the argument and says what would be accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.baselines import BASELINES, ZERO
from service.engine.attribution.cam import CAM, CAM_METHODS
from service.engine.attribution.faithfulness import DEFAULT_STEPS, METRICS
from service.engine.attribution.gradients import GRADIENT_MAP_METHODS, GUIDED_GRADCAM
from service.engine.attribution.sanity import parametrized_layers
from service.engine.attribution.targets import parse_targets

MAX_LAYERS = 8
DEFAULT_TOP_K = 5
_POOLING = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)

# How guided-gradcam brings its Grad-CAM to the input size (see GradientPlan.upsample).
NEAREST = "nearest"
BILINEAR = "bilinear"
UPSAMPLES = (NEAREST, BILINEAR)


@dataclass(frozen=True)
class CamPlan:
    """A validated /cam request.

    Attributes:
        method: one of CAM_METHODS.
        layers: layer names in forward order.
        targets: class indices for every image; () = each image's top-1 class.
        metrics: 'deletion' and/or 'insertion'.
        metric_steps: points on each deletion/insertion curve, minus one.
        randomize: top layers to re-initialize for the sanity check (0: none).
        top_k: predictions reported per image.
        normalize: min-max scale each map to [0, 1] (pytorch-grad-cam's output).
    """

    method: str
    layers: tuple[str, ...]
    targets: tuple[int, ...] = ()
    metrics: tuple[str, ...] = ()
    metric_steps: int = DEFAULT_STEPS
    randomize: int = 0
    top_k: int = DEFAULT_TOP_K
    normalize: bool = False

    @property
    def several_targets(self) -> bool:
        return len(self.targets) > 1


@dataclass(frozen=True)
class GradientPlan:
    """A validated /gradients request.

    Attributes:
        method: one of GRADIENT_MAP_METHODS.
        targets: class indices for every image; () = each image's top-1 class.
        layer: the Grad-CAM layer of guided-gradcam (None otherwise).
        upsample: guided-gradcam's Grad-CAM at input size: 'nearest' (the ReLU'd map, as
            Captum's GuidedGradCam) or 'bilinear' (scaled to [0, 1], the paper's figures).
        steps, baseline: integrated gradients.
        samples, noise, seed: SmoothGrad.
        randomize, top_k: as for CamPlan.
    """

    method: str
    targets: tuple[int, ...] = ()
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
        return len(self.targets) > 1


def check_choice(value: str, choices: tuple[str, ...], *, field: str) -> None:
    if value not in choices:
        raise InvalidInput(
            f"{field}: '{value}' is not one of {', '.join(choices)}",
            field=field,
            choices=list(choices),
        )


def check_finite(
    value: float, *, field: str, low: float | None = None, high: float | None = None
) -> None:
    """Reject NaN and infinities, and values outside [low, high] (a closed range)."""
    if (
        not math.isfinite(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        bounds = f" in [{low}, {high}]" if low is not None and high is not None else ""
        raise InvalidInput(
            f"{field}: {value} is not a finite number{bounds}", field=field, valid_range=[low, high]
        )


def _suitable(model: LoadedModel) -> list[str]:
    return [lay.name for lay in model.catalog.spatial_layers()][-10:]


def check_spatial_layers(
    model: LoadedModel, names: list[str], *, field: str = "layer"
) -> list[LayerInfo]:
    """The layers (default: the last spatial one) in forward order; 404 unknown, 422 not spatial."""
    catalog = model.catalog
    try:
        names = list(dict.fromkeys(names)) or [catalog.last_spatial_layer().name]
    except LookupError as exc:
        raise InvalidInput(
            f"{field}: model '{model.name}' has no layer with a spatial output", field=field
        ) from exc
    if len(names) > MAX_LAYERS:
        raise InvalidInput(
            f"{field}: {len(names)} layers, at most {MAX_LAYERS}",
            field=field,
            max_layers=MAX_LAYERS,
        )
    infos = [catalog.get(name, field=field) for name in names]
    for info in infos:
        if not info.spatial or info.calls == 0:
            suitable = _suitable(model)
            raise InvalidInput(
                f"{field}: '{info.name}' has no spatial output (output shape {info.output_shape}); "
                "a CAM needs a layer whose output reads as [C, H, W] with H x W > 1, such as "
                f"{', '.join(suitable)}",
                field=field,
                suitable=suitable,
            )
    return sorted(infos, key=lambda lay: lay.order)


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


def _check_cam_layer(model: LoadedModel, info: LayerInfo) -> None:
    """method=cam needs `layer -> global average pooling -> the final linear layer`.

    Checked here from the catalog as far as it can be (the classifier, the channel count,
    the modules in between); the pooling itself is verified on the actual numbers.
    """
    found = classifier(model)
    channels = info.spatial_shape[0] if info.spatial_shape else 0
    hint = "use method=gradcam, which equals CAM where CAM applies"
    if found is None:
        raise InvalidInput(
            f"layer: method=cam needs a model ending in a linear classifier; {hint}", field="layer"
        )
    name, linear = found
    if linear.in_features != channels:
        raise InvalidInput(
            "layer: method=cam needs a layer with as many channels as "
            f"'{name}' has inputs ({linear.in_features}); "
            f"'{info.name}' has {channels}. Pick the last layer before global pooling, or {hint}",
            field="layer",
            suitable=_suitable(model)[-1:],
        )
    modules = dict(model.module.named_modules())
    fc_order = model.catalog.get(name).order
    for other in model.catalog:
        between = info.order < other.order < fc_order and other.calls
        container = info.name.startswith(f"{other.name}.") or any(
            True for _ in modules[other.name].children()
        )
        if between and not container and not isinstance(modules[other.name], _POOLING):
            raise InvalidInput(
                f"layer: method=cam needs global average pooling right after '{info.name}', but "
                f"'{other.name}' ({other.type}) runs in between. "
                f"Pick the last layer before pooling, or {hint}",
                field="layer",
                suitable=_suitable(model)[-1:],
            )


def _check_top_k(model: LoadedModel, top_k: int | None) -> int:
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


def _check_randomize(model: LoadedModel, randomize: int) -> int:
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
) -> CamPlan:
    """Check a /cam request; layers default to the last spatial layer."""
    check_choice(method, CAM_METHODS, field="method")
    infos = check_spatial_layers(model, layers)
    if method == CAM:
        for info in infos:
            _check_cam_layer(model, info)
    chosen = tuple(dict.fromkeys(metrics or ()))
    for metric in chosen:
        check_choice(metric, METRICS, field="metrics")
    if not 2 <= metric_steps <= 256:
        raise InvalidInput(
            "metric_steps must be between 2 and 256", field="metric_steps", valid_range=[2, 256]
        )
    return CamPlan(
        method=method,
        layers=tuple(info.name for info in infos),
        targets=parse_targets(targets, model),
        metrics=chosen,
        metric_steps=metric_steps,
        randomize=_check_randomize(model, randomize),
        top_k=_check_top_k(model, top_k),
        normalize=normalize,
    )


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
) -> GradientPlan:
    """Check a /gradients request; `layer` is guided-gradcam's (default: the last spatial)."""
    check_choice(method, GRADIENT_MAP_METHODS, field="method")
    check_choice(baseline, BASELINES, field="baseline")
    check_choice(upsample, UPSAMPLES, field="upsample")
    if not 1 <= steps <= 1024:
        raise InvalidInput("steps must be between 1 and 1024", field="steps", valid_range=[1, 1024])
    if not 1 <= samples <= 1024:
        raise InvalidInput(
            "samples must be between 1 and 1024", field="samples", valid_range=[1, 1024]
        )
    check_finite(noise, field="noise", low=0.0, high=10.0)
    cam_layer = None
    if method == GUIDED_GRADCAM:
        names = [name for name in (layer or "").split(",") if name.strip()]
        if len(names) > 1:
            raise InvalidInput("layer: guided-gradcam takes one layer", field="layer")
        cam_layer = check_spatial_layers(model, [n.strip() for n in names])[0].name
    return GradientPlan(
        method=method,
        targets=parse_targets(targets, model),
        layer=cam_layer,
        upsample=upsample,
        steps=steps,
        baseline=baseline,
        samples=samples,
        noise=noise,
        seed=seed,
        randomize=_check_randomize(model, randomize),
        top_k=_check_top_k(model, top_k),
    )
