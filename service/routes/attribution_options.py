"""The options of /cam and /gradients, whose method choices come from the method registry."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from api_schemas.attributions import Baseline, CamUpsample, Canvas, GradientView, method_enum
from api_schemas.feature_maps import OutputFormat
from service.engine.attribution.methods.registry import cam_methods, gradient_methods
from service.engine.attribution.plan import CAM_SAMPLES, METRIC_STEPS, NOISE, SAMPLES, STEPS
from service.routes.options import Options, colormap_field, seed_field

CamMethod = method_enum("CamMethod", [m.name for m in cam_methods()])
GradientMethod = method_enum("GradientMethod", [m.name for m in gradient_methods()])

Target = Annotated[
    str | None,
    Field(
        description="class indices or labels, comma-separated, explained for every image; "
        "default: each image's top-1 class (segmentation: its largest class). Detection: the "
        "label that goes with `box`",
        max_length=4096,
    ),
]
Region = Annotated[
    str | None,
    Field(
        description="segmentation: the pixels whose class scores are summed: predicted (those "
        "predicted as the target class, the default), all, or x0,y0,x1,y1 in input pixels",
        max_length=256,
    ),
]
Box = Annotated[
    str | None,
    Field(
        description="detection: x0,y0,x1,y1 in input pixels; explains IoU + score of the "
        "detection of label `target` that overlaps it best (IoU > 0.5), as pytorch-grad-cam's "
        "FasterRCNNBoxScoreTarget",
        max_length=256,
    ),
]
Detection = Annotated[
    str | None,
    Field(
        description="detection: index(es) of the detection(s) to explain, 0 = highest score; "
        "default 0",
        max_length=256,
    ),
]
Unit = Annotated[
    str | None,
    Field(
        description="explain a unit instead of a class: LAYER:CHANNEL (the channel's spatial "
        "mean) or LAYER:CHANNEL@Y,X (one position of its map), as Captum's neuron methods; "
        "not together with target, region, box or detection",
        max_length=1024,
    ),
]
Alpha = Annotated[
    float,
    Field(ge=0, le=1, allow_inf_nan=False, description="weight of the heatmap over the input"),
]
CANVAS_FIELD = Field(
    Canvas.upload,
    description="png: draw maps on the uploaded picture's own geometry (upload; pixels a "
    "crop left out are faded) or on the model input (input)",
)
TopK = Annotated[int | None, Field(ge=1, description="predictions per image in json; default 5")]
Randomize = Annotated[
    int,
    Field(
        ge=0,
        le=100_000,
        description="sanity check (Adebayo et al. 2018): re-run with this many top layers "
        "re-initialized (on a copy) and report the rank correlation in json; 0: off",
    ),
]


def _plus_signs(value: object) -> object:
    """An unencoded `+` in a query string arrives as a space: `method=gradcam++` is gradcam++."""
    return value.replace(" ", "+") if isinstance(value, str) else value


class ExplainOptions(Options):
    """What /cam, /gradients and /attributions all take: what is explained (a class, region,
    box, detection or unit), the answer's format and canvas, predictions listed, and the
    sanity check."""

    target: Target = None
    region: Region = None
    box: Box = None
    detection: Detection = None
    unit: Unit = None
    fmt: OutputFormat = Field(OutputFormat.png, alias="format")
    canvas: Canvas = CANVAS_FIELD
    top_k: TopK = None
    randomize: Randomize = 0


class InputMapOptions(ExplainOptions):
    """/gradients' and /attributions' pictures: maps on the input's own channels."""

    view: GradientView = Field(
        GradientView.heatmap,
        description="png: |map| heatmap over the input, the map as an image, its positive or "
        "negative part",
    )
    colormap: str = colormap_field("inferno")
    alpha: Alpha = 0.6


class CamOptions(ExplainOptions):
    answer_fields = frozenset({"fmt", "colormap", "alpha", "canvas", "run_async"})
    plan_names = {"layer": "layers", "target": "targets"}
    name_lists = frozenset({"layer", "metrics"})
    method: Annotated[CamMethod, BeforeValidator(_plus_signs)] = Field(  # type: ignore[valid-type]
        CamMethod("gradcam"),
        description="the CAM method (gradcam++ may be sent as gradcam%2B%2B or gradcam++)",
    )
    layer: str | None = Field(
        None,
        description="layer name(s), comma-separated (`name:member`: one tensor of a dict or "
        "tuple output); default: the last spatial layer",
        max_length=4096,
    )
    colormap: str = colormap_field("jet")
    alpha: Alpha = 0.5
    normalize: bool = Field(
        False, description="min-max scale each npy map to [0, 1], as pytorch-grad-cam returns it"
    )
    eigen_smooth: bool = Field(
        False,
        description="each map is the first principal component of the method's weighted "
        "activations instead of their sum, as pytorch-grad-cam's eigen_smooth",
    )
    aug_smooth: bool = Field(
        False,
        description="the mean of the min-max scaled maps of the input flipped or not, times "
        "0.9, 1 and 1.1, as pytorch-grad-cam's aug_smooth (6 runs; classifiers only)",
    )
    aggregate_layers: bool = Field(
        False,
        description="one map 'a+b' for the layers in `layer`: the mean of their min-max "
        "scaled maps, scaled again, as pytorch-grad-cam with several target layers",
    )
    samples: int | None = Field(
        None,
        **CAM_SAMPLES.limits,
        description="sscam, iscam, smoothgradcam++: noisy or scaled passes (torchcam's "
        "num_samples; default 35, 10 and 4)",
    )
    noise: float | None = Field(
        None,
        **NOISE.limits,
        description="sscam: noise std on the unit-scaled masks (default 2.0); smoothgradcam++: "
        "noise std on the model input (default 0.3), as torchcam's std",
    )
    seed: int | None = Field(
        None, ge=0, le=2**63 - 1, description="sscam, smoothgradcam++: noise seed (default 0)"
    )
    metrics: str | None = Field(
        None, description="deletion, insertion or both: their AUC in json", max_length=64
    )
    metric_steps: int = Field(
        32, **METRIC_STEPS.limits, description="points per deletion/insertion curve"
    )
    run_async: bool | None = Field(
        None,
        alias="async",
        description="true: answer 202 and run as a job with progress (ScoreCAM and AblationCAM "
        "report every batch of masked passes) and cancellation; unset or false: answer directly",
    )


class GradientOptions(InputMapOptions):
    answer_fields = frozenset({"fmt", "view", "colormap", "alpha", "canvas"})
    plan_names = {"target": "targets"}
    method: GradientMethod = Field(  # type: ignore[valid-type]
        GradientMethod("vanilla"), description="the gradient method"
    )
    layer: str | None = Field(
        None,
        description="guided-gradcam: the Grad-CAM layer (`name:member` as for /cam); default "
        "the last spatial layer",
        max_length=1024,
    )
    upsample: CamUpsample = Field(
        CamUpsample.nearest,
        description="guided-gradcam: the Grad-CAM at input size, nearest and ReLU'd as "
        "Captum's GuidedGradCam, or bilinear and scaled to [0, 1] as the paper's figures",
    )
    steps: int = Field(
        32, **STEPS.limits, description="integrated-gradients: Gauss-Legendre points"
    )
    baseline: Baseline = Field(Baseline.zero, description="integrated-gradients: starting point")
    samples: int = Field(32, **SAMPLES.limits, description="smoothgrad: noisy copies per image")
    noise: float = Field(
        0.15,
        **NOISE.limits,
        allow_inf_nan=False,
        description="smoothgrad: noise std / (max - min) of the input",
    )
    seed: int = seed_field("smoothgrad: noise seed", high=2**63 - 1)
