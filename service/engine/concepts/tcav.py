"""TCAV (Kim et al. 2018, https://arxiv.org/abs/1711.11279): does a human concept matter to
a class?

A concept is a set of pictures (a dataset, or one class of it); so is the random set. Per
run, `samples` concept pictures and as many random pictures are drawn (seeded), and a linear
classifier (scikit-learn's SGDClassifier with Captum's `DefaultClassifier` settings:
alpha=0.01, max_iter=1000, tol=1e-3; two thirds to train, one third to report accuracy)
separates their flattened layer outputs. Its weight vector, pointing to the concept, is the
CAV. The run's score is the fraction of the inputs whose target logit grows along the CAV
(gradient . CAV > 0, Captum's `sign_count`). Random runs do the same with two disjoint
random samples; a two-sided t-test (scipy's `ttest_ind`) of the concept runs' scores
against the random runs' gives `p_value`, significant below `alpha`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier

from model_registry.datasets import Dataset, DatasetCatalog
from model_registry.errors import ClientError, InvalidInput, NotFound
from model_registry.registry import LoadedModel
from service.engine.attribution.graph import forward_to_layers
from service.engine.checks import Bound
from service.engine.images import decode_image, preprocess
from service.engine.progress import Progress, no_progress

ALPHA = 0.05
RUNS = Bound(2, 100)
SAMPLES = Bound(2, 500)
MAX_LAYERS = 8
MAX_PICTURES = 1000  # pictures read per concept set (a seeded sample of larger sets)
MAX_BYTES = 512 * 2**20  # flattened activations kept for the CAVs, all sets and layers
BATCH = 32
SGD = {"alpha": 0.01, "max_iter": 1000, "tol": 1e-3}


@dataclass(frozen=True)
class ConceptSet:
    """Pictures of one concept: `name` is `DATASET` or `DATASET/CLASS`."""

    name: str
    dataset: Dataset
    indices: tuple[int, ...]


@dataclass(frozen=True)
class TcavPlan:
    layers: tuple[str, ...]
    calls: dict[str, int]
    concepts: tuple[ConceptSet, ...]
    random: ConceptSet
    target: int
    runs: int
    samples: int
    seed: int
    alpha: float = ALPHA


@dataclass(frozen=True)
class TcavScore:
    layer: str
    concept: str
    scores: np.ndarray  # [runs], concept CAVs
    random_scores: np.ndarray  # [runs], random-vs-random CAVs
    accuracy: float
    p_value: float | None

    def significant(self, alpha: float) -> bool:
        return self.p_value is not None and self.p_value < alpha


@dataclass(frozen=True)
class TcavResult:
    scores: list[TcavScore]
    inputs: int


def concept_set(datasets: DatasetCatalog, name: str, *, field: str) -> ConceptSet:
    """`DATASET` (all its pictures) or `DATASET/CLASS` (one class folder); 404 naming the
    valid datasets or classes."""
    base, _, klass = name.partition("/")
    dataset = datasets.get(base, field=field)
    if not klass:
        return ConceptSet(name, dataset, tuple(range(len(dataset))))
    if klass not in dataset.classes:
        raise NotFound(
            f"{field}: dataset '{base}' has no class '{klass[:80]}'; classes: "
            f"{', '.join(dataset.classes)}",
            field=field,
            choices=list(dataset.classes),
        )
    number = dataset.classes.index(klass)
    return ConceptSet(
        name, dataset, tuple(i for i in range(len(dataset)) if dataset.label(i) == number)
    )


def plan_tcav(
    model: LoadedModel,
    datasets: DatasetCatalog,
    *,
    layers: list[str],
    concepts: list[str],
    random: str,
    target: int,
    runs: int,
    samples: int,
    seed: int,
) -> TcavPlan:
    """Check everything before any compute.

    Raises:
        InvalidInput: no classifier output, runs < 2, bad layers, or sets too small.
        NotFound: an unknown dataset or class (with the valid names).
    """
    if model.spec.task != "classification":
        raise InvalidInput(
            f"target: TCAV explains a class logit; model '{model.name}' is a "
            f"{model.spec.task} model without one",
            field="target",
        )
    RUNS.check_int("runs", runs)
    SAMPLES.check_int("samples", samples)
    if not concepts:
        raise InvalidInput("concepts: name at least one concept dataset", field="concepts")
    infos = (
        [model.catalog.get(name, field="layers") for name in layers]
        if layers
        else [model.catalog.last_spatial_layer()]
    )
    if len(infos) > MAX_LAYERS:
        raise InvalidInput(f"layers: at most {MAX_LAYERS}", field="layers")
    for info in infos:
        if info.output_shape is None or info.calls == 0:
            raise InvalidInput(f"layers: '{info.name}' has no single tensor output", field="layers")
    found = tuple(concept_set(datasets, name, field="concepts") for name in concepts)
    randoms = concept_set(datasets, random, field="random")
    smallest = min(len(c.indices) for c in found)
    size = min(samples, smallest, len(randoms.indices) // 2, MAX_PICTURES // 2)
    if size < 2:
        raise InvalidInput(
            f"concepts: each concept needs 2 pictures and the random set 4 (smallest concept "
            f"{smallest}, random {len(randoms.indices)})",
            field="concepts",
        )
    features = sum(math.prod(info.output_shape or ()) for info in infos)
    pictures = sum(min(len(c.indices), MAX_PICTURES) for c in (*found, randoms))
    if features * pictures * 4 > MAX_BYTES:
        raise InvalidInput(
            f"layers: {features * pictures * 4 / 2**20:.0f} MiB of activations for the CAVs, "
            f"the cap is {MAX_BYTES // 2**20} MiB; choose smaller layers or sets",
            field="layers",
        )
    names = tuple(info.name for info in infos)
    calls = {info.name: info.calls for info in infos}
    return TcavPlan(names, calls, found, randoms, target, runs, size, seed)


def _activations(
    model: LoadedModel, pictures: ConceptSet, indices: np.ndarray, plan: TcavPlan, max_pixels: int
) -> dict[str, np.ndarray]:
    """Flattened layer outputs [n, F] of the set's pictures `indices` (unreadable ones fail)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in plan.layers}
    for start in range(0, len(indices), BATCH):
        images = []
        for index in indices[start : start + BATCH]:
            try:
                images.append(
                    decode_image(pictures.dataset.read(int(index)), max_pixels=max_pixels)
                )
            except (OSError, ClientError) as exc:
                raise InvalidInput(
                    f"concepts: picture {pictures.dataset.describe(int(index))} of "
                    f"'{pictures.name}' could not be read",
                    field="concepts",
                ) from exc
        batch = preprocess(images, model.spec, model.device)
        with torch.inference_mode():
            found = forward_to_layers(model.module, batch, plan.calls, grad=False).activations
        for name in plan.layers:
            parts[name].append(found[name].flatten(1).float().cpu().numpy())
    return {name: np.concatenate(values) for name, values in parts.items()}


def input_gradients(
    model: LoadedModel, batch: torch.Tensor, plan: TcavPlan
) -> dict[str, np.ndarray]:
    """d(target logit)/d(layer output), flattened [B, F] per layer (Captum's default
    `LayerGradientXActivation(multiply_by_inputs=False)`)."""
    with torch.enable_grad():
        found = forward_to_layers(model.module, batch, plan.calls, grad=True)
        logits = found.logits
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise InvalidInput(
                f"target: model '{model.name}' does not output class logits [B, classes]; "
                "TCAV needs a class score",
                field="target",
            )
        tensors = [found.activations[name] for name in plan.layers]
        grads = torch.autograd.grad(logits[:, plan.target].sum(), tensors)
    return {
        name: g.detach().flatten(1).float().cpu().numpy()
        for name, g in zip(plan.layers, grads, strict=True)
    }


def train_cav(positive: np.ndarray, negative: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """The unit CAV toward `positive` and its held-out accuracy (a third of each side)."""
    x = np.concatenate([positive, negative])
    y = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    order = np.random.default_rng(seed).permutation(len(x))
    cut = max(1, len(x) * 2 // 3)
    train, test = order[:cut], order[cut:]
    if len(np.unique(y[train])) < 2:  # a tiny set: train on everything
        train = test = order
    with warnings.catch_warnings():  # Captum's 1000 iterations, converged or not
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = SGDClassifier(random_state=seed, **SGD).fit(x[train], y[train])
    accuracy = float((fitted.predict(x[test]) == y[test]).mean()) if len(test) else 1.0
    vector = fitted.coef_[0].astype(np.float64)
    norm = np.linalg.norm(vector)
    return (vector / norm if norm > 0 else vector), accuracy


def sign_score(gradients: np.ndarray, cav: np.ndarray) -> float:
    """Captum's `sign_count`: the fraction of inputs with gradient . CAV > 0."""
    return float(((gradients.astype(np.float64) @ cav) > 0).mean())


def _p_value(first: np.ndarray, second: np.ndarray) -> float | None:
    with warnings.catch_warnings():  # runs of equal scores: scipy warns, then answers
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(stats.ttest_ind(first, second).pvalue)
    return value if np.isfinite(value) else None


def _pool(pictures: ConceptSet, rng: np.random.Generator) -> np.ndarray:
    """The set's pictures read for the CAVs: all, or a seeded sample of MAX_PICTURES."""
    indices = np.asarray(pictures.indices)
    if len(indices) > MAX_PICTURES:
        indices = np.sort(rng.choice(indices, MAX_PICTURES, replace=False))
    return indices


def run_tcav(
    model: LoadedModel,
    batch: torch.Tensor,
    plan: TcavPlan,
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> TcavResult:
    """Scores per layer and concept for the inputs `batch` (runs on the device thread)."""
    rng = np.random.default_rng(plan.seed)
    gradients = input_gradients(model, batch, plan)
    total = len(plan.concepts) + 1
    random_acts = _activations(model, plan.random, _pool(plan.random, rng), plan, max_pixels)
    progress(1, total)
    n, size = plan.samples, len(next(iter(random_acts.values())))
    draws = [rng.permutation(size)[: 2 * n] for _ in range(plan.runs)]
    null = {
        name: np.asarray(
            [
                sign_score(gradients[name], train_cav(acts[d[:n]], acts[d[n:]], plan.seed + r)[0])
                for r, d in enumerate(draws)
            ]
        )
        for name, acts in random_acts.items()
    }
    scores = []
    for step, concept in enumerate(plan.concepts, start=2):
        acts = _activations(model, concept, _pool(concept, rng), plan, max_pixels)
        picks = [rng.permutation(len(next(iter(acts.values()))))[:n] for _ in range(plan.runs)]
        for name in plan.layers:
            runs = [
                train_cav(acts[name][p], random_acts[name][d[:n]], plan.seed + r)
                for r, (p, d) in enumerate(zip(picks, draws, strict=True))
            ]
            values = np.asarray([sign_score(gradients[name], cav) for cav, _ in runs])
            scores.append(
                TcavScore(
                    name,
                    concept.name,
                    values,
                    null[name],
                    float(np.mean([acc for _, acc in runs])),
                    _p_value(values, null[name]),
                )
            )
        progress(step, total)
    return TcavResult(scores, int(batch.shape[0]))
