"""The options of /contributions and of its dataset job (shared; no router here)."""

from __future__ import annotations

from pydantic import Field

from api_schemas.attributions import Baseline, method_enum
from api_schemas.contributions import ContributionFormat
from service.engine.attribution.contributions import DEFAULT_TOP, METHODS, STEPS, TOP
from service.routes.attribution_options import Box, Detection, Region, Target, Unit
from service.routes.options import Options, RunAsync, seed_field

ContributionMethod = method_enum("ContributionMethod", list(METHODS))

LAYER_FIELD = Field(
    max_length=1024,
    description="the layer whose channels are scored (GET /v1/models/{model}/layers): any "
    "layer whose output reads as [C, H, W], [C] or ViT tokens (read as maps)",
)
METHOD_FIELD = Field(
    ContributionMethod("grad-x-act"),
    description="grad-x-act: gradient x activation summed over positions (Captum's "
    "LayerGradientXActivation); conductance: Captum's LayerConductance summed over positions",
)
STEPS_FIELD = Field(
    32, **STEPS.limits, description="conductance: path steps (Captum's n_steps, Gauss-Legendre)"
)
BASELINE_FIELD = Field(Baseline.zero, description="conductance: the path's start")
TOP_FIELD = Field(DEFAULT_TOP, **TOP.limits, description="json: channels listed, largest first")


class ContributionOptions(Options):
    answer_fields = frozenset({"fmt", "run_async"})
    plan_names = {"target": "targets"}
    layer: str = LAYER_FIELD
    method: ContributionMethod = METHOD_FIELD  # type: ignore[valid-type]
    target: Target = None
    region: Region = None
    box: Box = None
    detection: Detection = None
    unit: Unit = None
    steps: int = STEPS_FIELD
    baseline: Baseline = BASELINE_FIELD
    top: int = TOP_FIELD
    fmt: ContributionFormat = Field(
        ContributionFormat.json,
        alias="format",
        description="json: the top channels per image and target; npy: float32 [B, C] "
        "([B, T, C] for several targets)",
    )
    run_async: RunAsync = None


class DatasetContributionOptions(Options):
    layer: str = LAYER_FIELD
    method: ContributionMethod = METHOD_FIELD  # type: ignore[valid-type]
    steps: int = STEPS_FIELD
    baseline: Baseline = BASELINE_FIELD
    top: int = TOP_FIELD
    limit: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="a random sample of this many pictures (drawn with seed); default: all",
    )
    seed: int = seed_field("random state of the sample")
