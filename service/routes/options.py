"""Each endpoint's options: one pydantic model, read from the query string.

A route declares `options: Annotated[XOptions, Query()]`; FastAPI lists every field as a
query parameter (constraints and descriptions in OpenAPI), and the route hands the model
whole to the engine's plan (`plan_args`) and the answer (`answer_args`). Fields shared by
several endpoints (format, colormap, seed, async) are declared once, below. The options of
/cam and /gradients are in `attribution_options`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationInfo

from api_schemas.attributions import Canvas
from api_schemas.feature_maps import OutputFormat, Reduce, Scale
from api_schemas.insight import (
    EmbeddingFormat,
    EmbeddingMethod,
    FilterFormat,
    FilterView,
    ImageFormat,
    StatsFormat,
)
from api_schemas.predictions import PredictFormat
from model_registry.errors import InvalidInput
from service.engine.channels import GRAMMAR, parse_channels
from service.engine.insight.embedding import PERPLEXITY
from service.engine.insight.invert import ALPHA, BETA, NORM
from service.engine.insight.maximize import DEFAULT_TV
from service.engine.insight.options import LR, TV
from service.engine.render import colormap_names
from service.routes.common import split_names


def colormap_field(default: str, description: str = "a matplotlib colormap name") -> Any:
    """A colormap: the document lists matplotlib's names (the renderer checks the same set,
    and answers 422 with the choices for any other)."""
    names: list[JsonValue] = [*colormap_names()]
    return Field(default, description=description, max_length=64, json_schema_extra={"enum": names})


def seed_field(description: str, *, high: int = 2**31 - 1) -> Any:
    return Field(0, ge=0, le=high, description=description)


_INDEX = "[0-9]{1,7}"
_ITEM = f"{_INDEX}(?:-{_INDEX})?"
# The channel grammar as a regex the OpenAPI document carries, in a dialect JSON Schema,
# Python and Rust read alike (ASCII classes only): lower-case keywords, counts from 1 without
# leading zeros, spaces around list items. The parser reads a little more (upper case, any
# whitespace, Unicode digits); the validator below refuses that surplus, so a value is
# accepted exactly when it matches and its ranges run forwards within 65,536 channels.
CHANNELS_PATTERN = rf"^ *(?:all|(?:first|last|top):[1-9][0-9]{{0,6}}|{_ITEM}(?: *, *{_ITEM})*) *$"
_CHANNELS = re.compile(CHANNELS_PATTERN)


def _channel_grammar(value: str, info: ValidationInfo) -> str:
    """The parser's 422 (it names the problem and the grammar) for what it refuses, and the
    same for what it reads but the pattern does not admit."""
    field = info.field_name or "channels"
    parse_channels(value, field=field)
    if not _CHANNELS.fullmatch(value):
        raise InvalidInput(
            f"{field}: cannot read '{value[:80]}'; expected {GRAMMAR} (lower case, digits 0-9)",
            field=field,
            grammar=GRAMMAR,
        )
    return value


Channels = Annotated[
    str,
    AfterValidator(_channel_grammar),
    Field(max_length=4096, json_schema_extra={"pattern": CHANNELS_PATTERN}),
]

RunAsync = Annotated[
    bool | None,
    Field(
        alias="async",
        description="true: answer 202 and run as a job; false: answer directly; unset: a job "
        "when the estimated time exceeds the server's synchronous budget",
    ),
]


class Options(BaseModel):
    """Options of one endpoint. Fields named in `answer_fields` shape the answer (format,
    rendering, async); the others are the plan's keyword arguments, by the same names
    except those in `plan_names`, and comma-separated `name_lists` arrive as lists."""

    model_config = ConfigDict(populate_by_name=True)
    answer_fields: ClassVar[frozenset[str]] = frozenset()
    plan_names: ClassVar[dict[str, str]] = {}
    name_lists: ClassVar[frozenset[str]] = frozenset()

    def plan_args(self) -> dict[str, Any]:
        """The plan's keyword arguments (enums as their values)."""
        return {
            self.plan_names.get(name, name): split_names(value)
            if name in self.name_lists
            else getattr(value, "value", value)
            for name, value in self
            if name not in self.answer_fields
        }

    def answer_args(self, exclude: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        """The fields that shape the answer (enums as their values)."""
        return {
            name: getattr(value, "value", value)
            for name, value in self
            if name in self.answer_fields and name not in exclude
        }


class PredictOptions(Options):
    answer_fields = frozenset({"fmt", "canvas"})
    top_k: int = Field(5, ge=1, description="classes per image (classification)")
    fmt: PredictFormat = Field(
        PredictFormat.json,
        alias="format",
        description="json; png: segmentation mask or detection boxes drawn (see canvas); "
        "npy: segmentation class map int64 [B, H, W]",
    )
    canvas: Canvas = Field(
        Canvas.upload,
        description="png: draw the mask or boxes on the uploaded picture's own geometry "
        "(upload; pixels a crop left out are faded) or on the model input (input)",
    )


class FeatureMapOptions(Options):
    answer_fields = frozenset(
        {"fmt", "colormap", "scale", "columns", "upsample", "overlay", "labels", "canvas"}
    )
    name_lists = frozenset({"layers"})
    layers: str | None = Field(
        None,
        description="comma-separated layer names (`name:member`: one tensor of a dict or tuple "
        "output); default: the deepest spatial layer",
        max_length=4096,
    )
    channels: Channels = Field("first:16", description=GRAMMAR)
    reduce: Reduce = Field(Reduce.none, description="how selected channels are combined")
    fmt: OutputFormat = Field(OutputFormat.png, alias="format")
    colormap: str = colormap_field("viridis")
    scale: Scale = Field(Scale.channel, description="min-max per tile or across the grid")
    columns: int | None = Field(None, ge=1, le=256, description="tiles per grid row")
    upsample: int | None = Field(None, ge=8, le=1024, description="tile size in pixels")
    overlay: bool = Field(False, description="blend maps onto the input image")
    canvas: Canvas = Field(
        Canvas.upload,
        description="overlay: blend onto the uploaded picture's own geometry (upload; what a "
        "crop left out is faded) or onto the model input (input)",
    )
    labels: bool = Field(True, description="channel numbers on tiles")


class StatsOptions(Options):
    answer_fields = frozenset({"fmt"})
    name_lists = frozenset({"layers"})
    layers: str | None = Field(
        None, description="comma-separated layer names; default: every layer", max_length=8192
    )
    fmt: StatsFormat = Field(StatsFormat.json, alias="format")


class FilterOptions(Options):
    answer_fields = frozenset({"colormap", "scale", "upsample", "columns", "labels"})
    fmt: FilterFormat = Field(FilterFormat.png, alias="format")
    channels: Channels | None = Field(
        None,
        description=f"output channels: {GRAMMAR}; top:N ranks by kernel norm. "
        "Default: all for npy, first:64 for png",
    )
    view: FilterView = Field(
        FilterView.auto,
        description="rgb: colour patches (3 inputs); mean: mean over inputs; inputs: one "
        "tile per input; auto: rgb for 3 inputs, else mean",
    )
    inputs: Channels = Field("first:16", description=f"input channels for view=inputs: {GRAMMAR}")
    colormap: str = colormap_field("RdBu_r", "diverging matplotlib colormap for mean/inputs")
    scale: Scale = Field(Scale.channel, description="largest |weight| per tile or across the grid")
    upsample: int | None = Field(None, ge=4, le=512, description="tile size in pixels")
    columns: int | None = Field(None, ge=1, le=256, description="tiles per row")
    labels: bool = Field(True, description="filter numbers on tiles")


class MaximizeOptions(Options):
    answer_fields = frozenset({"fmt", "run_async"})
    channel: int | None = Field(None, ge=0, description="the channel to excite")
    neuron: str | None = Field(
        None,
        description="'x,y': one position of the channel's map instead of its mean",
        max_length=32,
    )
    direction: str | None = Field(
        None,
        description="comma-separated weights, one per channel (instead of channel)",
        max_length=200_000,
    )
    steps: int = Field(256, ge=1, description="Adam steps (capped by the server)")
    lr: float = Field(0.05, **LR.limits, allow_inf_nan=False, description="Adam step size")
    size: int | None = Field(
        None, ge=8, description="image side in pixels; default: model input size"
    )
    seed: int = seed_field("same seed, same image (on CPU)")
    tv: float = Field(
        DEFAULT_TV, **TV.limits, allow_inf_nan=False, description="total-variation weight"
    )
    transforms: bool = Field(True, description="random jitter, scale and rotation each step")
    decorrelate: bool = Field(
        True, description="optimize in a decorrelated colour space (RGB models)"
    )
    fmt: ImageFormat = Field(ImageFormat.png, alias="format")
    run_async: RunAsync = None


class InvertOptions(Options):
    answer_fields = frozenset({"fmt", "run_async"})
    steps: int = Field(200, ge=1, description="Adam steps (capped by the server)")
    lr: float = Field(
        0.1, **LR.limits, allow_inf_nan=False, description="Adam step size, pixel units"
    )
    seed: int = seed_field("seed of the noise the search starts from")
    tv: float = Field(0.5, **TV.limits, allow_inf_nan=False, description="total-variation weight")
    beta: float = Field(
        2.0, **BETA.limits, allow_inf_nan=False, description="total-variation exponent"
    )
    norm: float = Field(0.01, **NORM.limits, allow_inf_nan=False, description="alpha-norm weight")
    alpha: float = Field(
        6.0, **ALPHA.limits, allow_inf_nan=False, description="alpha-norm exponent"
    )
    fmt: ImageFormat = Field(ImageFormat.png, alias="format")
    run_async: RunAsync = None


class EmbeddingOptions(Options):
    answer_fields = frozenset({"fmt", "thumbnails", "run_async"})
    layer: str | None = Field(
        None,
        description="default: the input of the final classifier; maps are average-pooled",
        max_length=256,
    )
    method: EmbeddingMethod = Field(EmbeddingMethod.pca, description="scikit-learn PCA or t-SNE")
    seed: int = seed_field("random state of the projection")
    perplexity: float | None = Field(
        None,
        **PERPLEXITY.limits,
        allow_inf_nan=False,
        description="t-SNE perplexity; default min(30, (n - 1) / 3)",
    )
    fmt: EmbeddingFormat = Field(EmbeddingFormat.json, alias="format")
    thumbnails: bool = Field(False, description="png: draw the images instead of dots")
    run_async: RunAsync = None


class DatasetAnalysisOptions(Options):
    name_lists = frozenset({"layers"})
    layers: str | None = Field(
        None,
        description="comma-separated layers to describe; default: every layer with a tensor output",
        max_length=4096,
    )
    embedding_layer: str | None = Field(
        None,
        description="a layer with spatial output, average-pooled; default: the last such layer",
        max_length=256,
    )
    method: EmbeddingMethod = Field(EmbeddingMethod.tsne, description="scikit-learn t-SNE or PCA")
    limit: int | None = Field(
        None,
        ge=2,
        le=100_000,
        description="analyse a random sample of this many pictures (drawn with seed); default: all",
    )
    seed: int = seed_field("random state of the sample and of the projection")
