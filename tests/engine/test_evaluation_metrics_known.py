"""Known answers of the evaluation metrics on the digits model: ROAD prefers Grad-CAM to
random maps; the MPRT cascade decorrelates Grad-CAM and not guided backprop at depth 1;
sensitivity and random-logit are 0 and 1 for maps that ignore the input and the class."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_registry.registry import LoadedModel
from service.engine.attribution.guided import GUIDED, relu_override
from service.engine.attribution.sanity import parametrized_layers
from service.engine.evaluation.cascade import randomized_copies
from service.engine.evaluation.metrics import Cascade, get_metric, resolve_parameters
from tests.engine.evaluation_support import digits_inputs, eval_batch, gradcam


def run(name: str, batch, **given):
    metric = get_metric(name)
    return metric.compute(batch, resolve_parameters(metric, given))


@pytest.fixture(scope="module")
def case(digits: LoadedModel):
    inputs, targets = digits_inputs(digits, 8)
    return inputs, targets, gradcam(digits, inputs, targets)


def test_road_prefers_gradcam_to_random_maps(digits: LoadedModel, case) -> None:
    inputs, targets, maps = case
    ours = run("road-combined", eval_batch(digits, inputs, targets, maps))
    for seed in range(2):
        generator = torch.Generator().manual_seed(seed)
        for noise in (
            torch.rand(8, 1, 32, 32, generator=generator),
            F.interpolate(torch.rand(8, 1, 8, 8, generator=generator), size=(32, 32)),
        ):
            random = run("road-combined", eval_batch(digits, inputs, targets, noise.numpy()))
            assert ours.mean() > random.mean() + 0.05
    assert (
        run("road-morf", eval_batch(digits, inputs, targets, maps)).mean()
        < run("road-lerf", eval_batch(digits, inputs, targets, maps)).mean()
    )


def guided_backprop(module: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor):
    inputs = inputs.clone().requires_grad_(True)
    with torch.enable_grad(), relu_override(GUIDED):
        scores = module(inputs).gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(scores, inputs)
    return grad.numpy()


def test_randomization_decorrelates_gradcam_not_guided_backprop(digits: LoadedModel, case) -> None:
    inputs, targets, maps = case
    layers = tuple(parametrized_layers(digits)[::-1])
    methods = {
        "gradcam": (maps, lambda model: gradcam(model, inputs, targets)),
        "guided-backprop": (
            guided_backprop(digits.module, inputs, targets),
            lambda model: guided_backprop(model.module, inputs, targets),
        ),
    }
    depth_one = {}
    for name, (first, explain) in methods.items():

        def randomized(depth: int, explain=explain) -> np.ndarray:
            *_, (_, _, twin) = randomized_copies(digits.module, layers[:depth])
            return explain(dataclasses.replace(digits, module=twin))

        batch = eval_batch(
            digits, inputs, targets, first, explain_randomized=randomized, randomizable=layers
        )
        result = run("randomization", batch, depths=2)
        assert isinstance(result, Cascade) and result.layers == layers[:2]
        assert result.similarity.shape == (8, 2) and result.values.shape == (8,)
        depth_one[name] = np.nanmean(result.similarity[:, 0])
        if name == "gradcam":
            assert np.nanmean(result.decorrelated_at == 1) >= 0.5
    assert depth_one["gradcam"] < 0.5 < 0.8 < depth_one["guided-backprop"]


def test_sensitivity_is_zero_for_a_map_that_ignores_the_input(digits: LoadedModel, case) -> None:
    inputs, targets, maps = case
    fixed = eval_batch(
        digits,
        inputs,
        targets,
        maps,
        explain=lambda x, t: np.tile(maps, (len(x) // len(maps), 1, 1, 1)),
    )
    for name in ("max-sensitivity", "avg-sensitivity"):
        np.testing.assert_array_equal(run(name, fixed, samples=3), 0)
    moving = eval_batch(
        digits, inputs, targets, maps, explain=lambda x, t: gradcam(digits, x, t), rows=16
    )
    high = run("max-sensitivity", moving, samples=4, radius=0.5)
    mean = run("avg-sensitivity", moving, samples=4, radius=0.5)
    assert np.all(high >= mean) and np.all(mean > 0)


def test_random_logit_is_one_for_a_class_blind_map(digits: LoadedModel, case) -> None:
    inputs, targets, maps = case
    blind = eval_batch(digits, inputs, targets, maps, explain=lambda x, t: maps)
    np.testing.assert_allclose(run("random-logit", blind), 1.0, atol=1e-9)
    seen = []
    aware = eval_batch(
        digits,
        inputs,
        targets,
        maps,
        explain=lambda x, t: seen.append(t) or gradcam(digits, x, t),
    )
    scores = run("random-logit", aware)
    assert np.all(scores < 1) and bool((seen[0] != targets).all())


def test_an_empty_map_gives_numbers_or_nan_never_an_error(digits: LoadedModel, case) -> None:
    """A constant map (a CAM that is 0 everywhere) is undefined for the correlation and
    entropy metrics (NaN, as in their references) and breaks nothing else."""
    inputs, targets, _ = case
    empty = eval_batch(digits, inputs[:2], targets[:2], np.zeros((2, 1, 32, 32), np.float32))
    for name in ("road-combined", "drop-in-confidence", "sparseness", "deletion"):
        assert np.isfinite(run(name, empty, **({"steps": 4} if name == "deletion" else {}))).all()
    for name in ("complexity", "faithfulness-correlation"):
        assert np.isnan(
            run(name, empty, **({"correlation_runs": 4} if "corr" in name else {}))
        ).all()
