"""The options of `/attributions`, whose method choices come from the method registry.

Method parameters default to None here: the plan gets only those the client sent, so a
parameter of another method answers 422 naming it, and the method's own defaults fill in
the rest (listed by `GET /v1/methods`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from api_schemas.attributions import CamUpsample, method_enum
from api_schemas.input_attributions import PerturbationBaseline
from service.engine.attribution.lrp import RULES
from service.engine.attribution.methods.registry import input_methods
from service.engine.attribution.plan import METRIC_STEPS
from service.routes.attribution_options import InputMapOptions
from service.routes.options import Options, RunAsync

InputMethod = method_enum("InputMethod", [m.name for m in input_methods()])

# What the plan receives only when sent; every other field shapes the answer or the target.
METHOD_PARAMETERS = (
    "layer",
    "upsample",
    "steps",
    "baseline",
    "samples",
    "noise",
    "noise_level",
    "seed",
    "window",
    "stride",
    "mask",
    "batch",
    "rule",
)
LrpRule = method_enum("LrpRule", list(RULES))
Pixels = Annotated[int | None, Field(ge=1, le=4096)]


class InputMethodParameters(Options):
    """The parameters of the /attributions methods, each None unless sent (the method's own
    default then applies); shared by /attributions and the picture comparison."""

    upsample: CamUpsample | None = Field(None, description="guided-gradcam: nearest or bilinear")
    steps: int | None = Field(None, ge=1, le=1024, description="integrated-gradients: points")
    baseline: PerturbationBaseline | None = Field(
        None,
        description="integrated-gradients, deeplift, deeplift-shap, gradient-shap (zero, black, "
        "blur) and perturbation methods (also mean): the reference input",
    )
    samples: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="smoothgrad: noisy copies; shapley-sampling: feature orders; kernelshap, "
        "lime: coalitions; deeplift-shap: baselines; gradient-shap: draws (at most 1024)",
    )
    noise: str | None = Field(
        None,
        max_length=32,
        description="smoothgrad, gradient-shap: noise std / (max - min) of the input (a "
        "number); any other gradient method: a noise tunnel, smoothgrad, smoothgrad_sq or "
        "vargrad, with samples, noise_level and seed",
    )
    noise_level: float | None = Field(
        None,
        ge=0,
        le=10,
        allow_inf_nan=False,
        description="noise tunnel: noise std / (max - min) of the input (default 0.15)",
    )
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="seed of random methods")
    window: Pixels = Field(None, description="occlusion: the square's side in input pixels")
    stride: Pixels = Field(None, description="occlusion: the window's step in input pixels")
    mask: str | None = Field(
        None,
        max_length=32,
        description="feature-ablation, shapley-sampling, kernelshap, lime: grid:N (N x N "
        "blocks of the input) or slic:N (scikit-image SLIC superpixels, n_segments=N)",
    )
    batch: int | None = Field(
        None, ge=1, le=256, description="perturbation methods: perturbed inputs per forward pass"
    )
    rule: LrpRule | None = Field(  # type: ignore[valid-type]
        None, description="lrp: zennit's composite (default epsilon-plus-flat)"
    )

    def method_parameters(self) -> dict[str, Any]:
        """The method parameters the client sent (enums as their values)."""
        names = [name for name in METHOD_PARAMETERS if name in type(self).model_fields]
        values = {name: getattr(self, name) for name in names}
        return {k: getattr(v, "value", v) for k, v in values.items() if v is not None}


class InputAttributionOptions(InputMethodParameters, InputMapOptions):
    answer_fields = frozenset({"fmt", "view", "colormap", "alpha", "canvas", "run_async"})
    name_lists = frozenset({"metrics"})
    plan_names = {"target": "targets"}
    method: InputMethod = Field(  # type: ignore[valid-type]
        description="a method of GET /v1/methods whose endpoints include attributions"
    )
    run_async: RunAsync = None
    metrics: str | None = Field(
        None, description="deletion, insertion or both: their AUC in json", max_length=64
    )
    metric_steps: int | None = Field(
        None,
        ge=int(METRIC_STEPS.low),
        le=int(METRIC_STEPS.high),
        description="points per deletion/insertion curve (32)",
    )
    layer: str | None = Field(
        None, description="guided-gradcam: the Grad-CAM layer", max_length=1024
    )

    def target_args(self) -> dict[str, Any]:
        """The plan's target and listing arguments."""
        args = self.plan_args()
        return {k: v for k, v in args.items() if k not in METHOD_PARAMETERS and k != "method"}
