"""What an evaluation metric is: the batch it reads, its parameters and `register_metric`.

A metric module imports this module only; `registry` imports every module of the package
so their `register_metric` calls run (as the attribution methods' registry does).

The contract, for the code that runs metrics (the `/evaluate` routes and the dataset job):
- build one `EvalBatch` per batch of images and method: the normalized inputs on the
  model's device, the targets (a class per image, or a resolved region or box `Target`),
  the method's maps as float32 numpy [B, A, H, W] at input
  resolution (A = 1 for a CAM, A = C for an input-space attribution), and the callables
  the metric's `needs` ask for;
- `parameters = resolve_parameters(metric, given)` (422 on an unknown name or a value out of
  range), then `metric.compute(batch, parameters)`;
- the answer is one float per image, numpy float64 [B] (NaN where the metric is undefined for
  that image, e.g. a constant map), or, for `randomization`, a `Cascade` whose `values` are
  the per-image numbers and whose other fields give the per-depth detail.

Every metric runs on the calling thread (the device thread) and starts no thread of its own;
the forward passes over perturbed inputs are batched `rows` at a time through
`EvalBatch.forward`, which must run the model without gradients and leave it as found.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from model_registry.errors import InvalidInput
from service.engine.attribution.target_objects import ClassTarget, Target
from service.engine.checks import Bound

FAITHFULNESS = "faithfulness"
ROBUSTNESS = "robustness"
COMPLEXITY = "complexity"
LOCALISATION = "localisation"
RANDOMISATION = "randomisation"
FAMILIES = (FAITHFULNESS, ROBUSTNESS, COMPLEXITY, LOCALISATION, RANDOMISATION)

NEEDS_MASKS = "masks"
NEEDS_EXPLAIN = "explain"
NEEDS_RANDOMIZED = "explain_randomized"


@dataclass(frozen=True)
class EvalBatch:
    """Everything a metric may read for one batch of images explained by one method.

    Attributes:
        inputs: normalized model inputs [B, C, H, W] on the model's device.
        targets: int64 [B], the explained class of each image (on any device): the class
            of a classifier, a segmentation region's class or a detection box's label.
        maps: float32 [B, A, H, W] at input resolution: A = 1 for a CAM, A = C for an
            input-space attribution (signed values as the method gives them).
        forward: the model's output for any inputs [N, C, H, W] (the caller's model, run
            without gradients): logits [N, classes] of a classifier, whatever `target`
            reads otherwise; metrics call it with at most `rows` inputs at a time.
        explain: re-explain (inputs [N, C, H, W], targets [N]) -> maps like `maps` [N, ...]
            with the same method and options (robustness, random-logit). N may be several
            copies of the batch (sample-major: the whole batch once per noise sample), and the
            targets need not be the explained ones (random-logit asks for other classes).
        explain_randomized: depth -> maps like `maps` for these inputs and targets, computed
            on a copy of the model whose top `depth` parametrized layers (`randomizable[:depth]`)
            are re-initialized, cumulatively as `randomized_copies` does (randomisation).
        randomizable: the parametrized layers in cascade order, top first.
        masks: bool [B, H, W] ground truth of the object per image (localisation); an
            image without a mask gets an all-False one and scores NaN, as Quantus scores an
            empty segmentation.
        seed: with `keys`, seeds every random draw of a metric (noise, perturbations,
            subsets): image i draws from its own generator, seeded by `image_seeds()[i]`.
        keys: each image's key: its dataset index in a dataset job, its position in the
            request otherwise (None: 0..B-1). An image's draws depend on (seed, key) only,
            never on its batch-mates, so a dataset evaluation run in slices gives the
            values it gives whole.
        rows: inputs per `forward` call.
        target: what is explained, resolved on these images with one target each: None for
            the class `targets` of a classifier, else a `RegionTarget` (segmentation) or
            `BoxTarget` (detection); `score` reads it.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    maps: np.ndarray
    forward: Callable[[torch.Tensor], torch.Tensor]
    explain: Callable[[torch.Tensor, torch.Tensor], np.ndarray] | None = None
    explain_randomized: Callable[[int], np.ndarray] | None = None
    randomizable: tuple[str, ...] = ()
    masks: np.ndarray | None = None
    seed: int = 0
    keys: tuple[int, ...] | None = None
    rows: int = 64
    target: Target | None = None

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])

    def images(self) -> torch.Tensor:
        """int64 [B]: 0..B-1, each image of the batch once (for `score`)."""
        return torch.arange(self.size)

    def score(
        self, inputs: torch.Tensor, images: torch.Tensor, *, probability: bool = False
    ) -> torch.Tensor:
        """The explained score of `inputs` [N, C, H, W], input n being (a variant of) image
        `images[n]` of the batch -> float [N]; call it with at most `rows` inputs.

        A class's logit (pytorch-grad-cam's `ClassifierOutputTarget`) or, with `probability`,
        its softmax probability (`ClassifierOutputSoftmaxTarget`); a region's or box's
        `Target.scores` either way, as grad-cam's metrics read any target callable given.
        """
        output = self.forward(inputs)
        if self.target is not None and not isinstance(self.target, ClassTarget):
            return self.target.scores(output, images)[:, 0].float()
        logits = output.float()
        if probability:
            logits = logits.softmax(dim=1)
        picked = self.targets.to(logits.device).long()[images.to(logits.device)]
        return logits.gather(1, picked.view(-1, 1))[:, 0]

    def image_seeds(self) -> list[int]:
        """Each image's seed, `image_seed(seed, key)`."""
        keys = range(self.size) if self.keys is None else self.keys
        return [image_seed(self.seed, key) for key in keys]


def image_seed(seed: int, key: int) -> int:
    """The seed of one image's draws: a 32-bit mix of (seed, key) by numpy's SeedSequence,
    usable as `numpy.random.RandomState(...)` and `torch.Generator().manual_seed(...)`."""
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0])


@dataclass(frozen=True)
class Cascade:
    """The randomisation metric's answer (Quantus MPRT).

    Attributes:
        values: float64 [B], one number per image for aggregation and ranking: the mean
            similarity over the depths (Quantus's `return_average_correlation`).
        layers: the randomized layers, top first; depth d has `layers[:d]` randomized.
        similarity: float64 [B, D], similarity of the original map with the map at depth d
            (column d - 1); NaN where a map is constant.
        decorrelated_at: float64 [B], the first depth whose similarity is below `threshold`
            (NaN when no depth is).
        threshold: the similarity below which a map counts as decorrelated.
    """

    values: np.ndarray
    layers: tuple[str, ...]
    similarity: np.ndarray
    decorrelated_at: np.ndarray
    threshold: float


@dataclass(frozen=True)
class Parameter:
    """One metric parameter: its default, its valid range and what it does.

    `kind` is int, float, or "ints"/"floats" (a comma-separated list of numbers, each within
    `bound`, at most `max_items` of them). `counts_input_values`: the value is a number of
    the model input's values, so the plan also caps it at C x H x W of that model.
    """

    default: Any
    description: str
    kind: Any = float
    bound: Bound | None = None
    max_items: int = 32
    counts_input_values: bool = False

    def check(self, name: str, value: Any) -> Any:
        """`value` (a number, a list or their text) parsed and checked; 422 naming `name`."""
        many = self.kind in ("ints", "floats")
        whole = self.kind in ("ints", int)
        cast: Callable[[Any], int | float] = _integer if whole else _number
        try:
            if not many or isinstance(value, int | float):
                items = [value]  # a list parameter takes one bare number as a list of one
            else:
                items = value.split(",") if isinstance(value, str) else list(value)
            values = tuple(cast(item) for item in items)
        except (TypeError, ValueError) as exc:
            kind = "integer" if whole else "number"
            within = f" in {_interval(self.bound)}" if self.bound else ""
            what = f"comma-separated {kind}s" if many else f"an {kind}" if whole else f"a {kind}"
            raise InvalidInput(
                f"{name}: cannot read {str(value)[:40]!r} as {what}{within}",
                field=name,
                **({"valid_range": [self.bound.low, self.bound.high]} if self.bound else {}),
            ) from exc
        if many and not 1 <= len(values) <= self.max_items:
            raise InvalidInput(
                f"{name}: give 1 to {self.max_items} values",
                field=name,
                valid_range=[1, self.max_items],
            )
        if self.bound is not None:
            for item in values:
                if isinstance(item, int):
                    self.bound.check_int(name, item)
                else:
                    self.bound.check(name, item)
        return values if many else values[0]


def _interval(bound: Bound) -> str:
    """'[2, 256]', or '(0, 10]' for a range open at its low end."""
    return f"{'(' if bound.strict_low else '['}{bound.low:g}, {bound.high:g}]"


def _number(value: Any) -> float:
    """A float from a number or its text; ValueError for True and False (not numbers)."""
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def _integer(value: Any) -> int:
    """An int from an int, an integral float or their text; ValueError for 2.5 or True."""
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value) if isinstance(value, str) and "." in value else value
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(value)
    return int(number)


@dataclass(frozen=True)
class Metric:
    """An evaluation metric, as the API lists it.

    Attributes:
        name: the API name, e.g. "road-combined".
        family: one of `FAMILIES`.
        reference: the implementation it matches, e.g. "Quantus 0.6 Sparseness".
        higher_is_better: the direction of a better explanation.
        needs: what `EvalBatch` must carry beyond inputs and maps: a subset of
            {"masks", "explain", "explain_randomized"}.
        classes_only: why it is defined for a classifier's class target only (e.g. it
            explains other classes); "" when a region or box target has it too.
        parameters: name -> `Parameter` (the names are the API's option names).
        compute: (batch, resolved parameters) -> float64 [B], or a `Cascade`.
        summary: one line for listings.
    """

    name: str
    family: str
    reference: str
    higher_is_better: bool
    compute: Callable[[EvalBatch, Mapping[str, Any]], np.ndarray | Cascade]
    summary: str = ""
    needs: frozenset[str] = frozenset()
    parameters: Mapping[str, Parameter] = field(default_factory=dict)
    classes_only: str = ""

    def defaults(self) -> dict[str, Any]:
        return {name: parameter.default for name, parameter in self.parameters.items()}


METRICS: dict[str, Metric] = {}


def register_metric(
    name: str,
    *,
    family: str,
    reference: str,
    higher_is_better: bool,
    summary: str,
    needs: Sequence[str] = (),
    parameters: Mapping[str, Parameter] | None = None,
    classes_only: str = "",
) -> Callable[[Callable], Callable]:
    """Function decorator: `compute(batch, parameters)` becomes the metric `name`."""
    if family not in FAMILIES:
        raise ValueError(f"metric {name!r}: family {family!r} is not one of {FAMILIES}")

    def wrap(compute: Callable) -> Callable:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(
            name=name,
            family=family,
            reference=reference,
            higher_is_better=higher_is_better,
            compute=compute,
            summary=summary,
            needs=frozenset(needs),
            parameters=dict(parameters or {}),
            classes_only=classes_only,
        )
        return compute

    return wrap
