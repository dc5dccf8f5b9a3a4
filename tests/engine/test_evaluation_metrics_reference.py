"""Each metric equals its reference on the same model, inputs, maps and masks: Quantus for
complexity, localisation and faithfulness correlation; pytorch-grad-cam for ROAD (zero
noise) and the confidence changes; Captum for infidelity with the same perturbation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import quantus
import torch
from captum.metrics import infidelity
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.metrics.road import (
    ROADCombined,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirstAverage,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from model_registry.registry import LoadedModel
from service.engine.attribution.sanity import parametrized_layers
from service.engine.evaluation.cascade import randomized_copies
from service.engine.evaluation.metrics import get_metric, resolve_parameters, sensitivity
from service.engine.evaluation.metrics.infidelity import infidelity_noise
from service.engine.evaluation.metrics.prepare import scale_cam
from tests.engine.evaluation_support import digits_inputs, eval_batch, gradcam

COUNT = 6


@pytest.fixture(scope="module")
def case(digits: LoadedModel):
    """Six digits, their Grad-CAMs (min-max scaled as grad-cam's), the strokes as masks."""
    inputs, targets = digits_inputs(digits, COUNT)
    maps = scale_cam(gradcam(digits, inputs, targets)[:, 0])[:, None]
    masks = (inputs[:, 0] > inputs[:, 0].mean(dim=(1, 2), keepdim=True)).numpy()
    batch = eval_batch(digits, inputs, targets, maps, masks=masks, seed=3)
    return digits, batch


def ours(name: str, batch, **given) -> np.ndarray:
    metric = get_metric(name)
    return metric.compute(batch, resolve_parameters(metric, given))


QUANTUS = {
    "sparseness": lambda: quantus.Sparseness(disable_warnings=True),
    "complexity": lambda: quantus.Complexity(disable_warnings=True),
    "pointing-game": lambda: quantus.PointingGame(disable_warnings=True),
    "relevance-mass": lambda: quantus.RelevanceMassAccuracy(disable_warnings=True),
    "relevance-rank": lambda: quantus.RelevanceRankAccuracy(disable_warnings=True),
}


@pytest.mark.parametrize("name", list(QUANTUS))
def test_map_metrics_equal_quantus(name: str, case) -> None:
    model, batch = case
    theirs = QUANTUS[name]()(
        model=model.module,
        x_batch=batch.inputs.numpy(),
        y_batch=batch.targets.numpy(),
        a_batch=batch.maps.copy(),
        s_batch=batch.masks[:, None].astype(np.float32),
        channel_first=True,
        device="cpu",
    )
    got = ours(name, batch)
    assert got.shape == (COUNT,)
    np.testing.assert_allclose(got, np.asarray(theirs, np.float64), rtol=0, atol=1e-5)


def test_faithfulness_correlation_equals_quantus_with_each_images_seed(case) -> None:
    model, batch = case
    theirs = []
    for index, seed in enumerate(batch.image_seeds()):
        np.random.seed(seed)  # Quantus draws its subsets from numpy's global generator
        theirs += quantus.FaithfulnessCorrelation(
            nr_runs=20, subset_size=100, return_aggregate=False, disable_warnings=True
        )(
            model=model.module,
            x_batch=batch.inputs[index : index + 1].numpy(),
            y_batch=batch.targets[index : index + 1].numpy(),
            a_batch=batch.maps[index : index + 1].copy(),
            channel_first=True,
            device="cpu",
        )
    got = ours("faithfulness-correlation", batch, correlation_runs=20, correlation_subset=100)
    np.testing.assert_allclose(got, np.asarray(theirs, np.float64), rtol=0, atol=1e-5)
    one_run_a_pass = dataclasses.replace(batch, rows=COUNT)  # subsets drawn pass by pass
    again = ours(
        "faithfulness-correlation", one_run_a_pass, correlation_runs=20, correlation_subset=100
    )
    np.testing.assert_allclose(again, got, rtol=0, atol=1e-6)
    alone = dataclasses.replace(
        batch, inputs=batch.inputs[2:3], targets=batch.targets[2:3], maps=batch.maps[2:3], keys=(2,)
    )  # an image's value does not depend on its batch-mates
    single = ours("faithfulness-correlation", alone, correlation_runs=20, correlation_subset=100)
    np.testing.assert_allclose(single, got[2:3], rtol=0, atol=1e-6)


ROAD = {
    "road-morf": ROADMostRelevantFirstAverage,
    "road-lerf": ROADLeastRelevantFirstAverage,
    "road-combined": ROADCombined,
}


@pytest.mark.parametrize("name", list(ROAD))
def test_road_without_noise_equals_grad_cam(name: str, case, monkeypatch) -> None:
    model, batch = case
    from pytorch_grad_cam.metrics import road

    # grad-cam's imputers are built inside its averagers with the default noise: set it to 0
    monkeypatch.setattr(
        road.NoisyLinearImputer.__init__, "__defaults__", (0.0, road.neighbors_weights)
    )
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in batch.targets]
    percentiles = [20, 50, 80]
    theirs = ROAD[name](percentiles)(batch.inputs, batch.maps[:, 0], targets, model.module)
    got = ours(name, batch, road_percentiles="20,50,80", road_noise=0)
    np.testing.assert_allclose(got, np.asarray(theirs, np.float64), rtol=0, atol=1e-5)
    few = ours(name, dataclasses.replace(batch, rows=4), road_percentiles="20,50,80", road_noise=0)
    np.testing.assert_allclose(few, got, rtol=0, atol=1e-6)  # passes of 4 images


@pytest.mark.parametrize(
    "name,reference",
    [("drop-in-confidence", DropInConfidence), ("increase-in-confidence", IncreaseInConfidence)],
)
def test_confidence_changes_equal_grad_cam(name: str, reference, case) -> None:
    model, batch = case
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in batch.targets]
    theirs = reference()(batch.inputs, batch.maps[:, 0], targets, model.module)
    np.testing.assert_allclose(ours(name, batch), np.asarray(theirs, np.float64), rtol=0, atol=1e-5)


def test_infidelity_equals_captum_with_the_same_noise(case) -> None:
    model, batch = case
    noise = torch.cat(
        [
            infidelity_noise(torch.Generator().manual_seed(seed), batch.inputs.shape[1:], 5, 0.1)
            for seed in batch.image_seeds()
        ]
    )

    def perturb(inputs: torch.Tensor):
        return noise, inputs - noise

    maps = torch.from_numpy(batch.maps).expand_as(batch.inputs).contiguous()
    theirs = infidelity(
        model.module, perturb, batch.inputs, maps, target=batch.targets, n_perturb_samples=5
    )
    got = ours("infidelity", batch, infidelity_samples=5, infidelity_noise=0.1)
    np.testing.assert_allclose(got, theirs.double().numpy(), rtol=1e-4, atol=1e-7)
    grouped = ours(
        "infidelity", dataclasses.replace(batch, rows=7), infidelity_samples=5, infidelity_noise=0.1
    )
    np.testing.assert_allclose(grouped, got, rtol=1e-5, atol=1e-7)  # one image per pass


def quantus_explain(loaded: LoadedModel):
    """Quantus's `explain_func`: our Grad-CAM of relu3 for numpy inputs and targets."""

    def explain(model, inputs, targets, **kwargs) -> np.ndarray:
        batch = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        return gradcam(loaded, batch, torch.as_tensor(np.asarray(targets)).long())

    return explain


SENSITIVITY = {"max-sensitivity": quantus.MaxSensitivity, "avg-sensitivity": quantus.AvgSensitivity}


@pytest.mark.parametrize("name", list(SENSITIVITY))
def test_sensitivity_equals_quantus_with_each_images_seed(name: str, case, monkeypatch) -> None:
    """Each image's noise is Quantus's for that image alone after `np.random.seed` of its
    seed; the batch's re-explanations run in one call, or one sample at a time."""
    model, batch = case
    explain = quantus_explain(model)
    batch = dataclasses.replace(batch, explain=lambda x, t: explain(None, x.numpy(), t.numpy()))
    theirs = []
    for index, seed in enumerate(batch.image_seeds()):
        np.random.seed(seed)  # Quantus draws its noise from numpy's global generator
        theirs += SENSITIVITY[name](nr_samples=4, lower_bound=0.3, disable_warnings=True)(
            model=model.module,
            x_batch=batch.inputs[index : index + 1].numpy(),
            y_batch=batch.targets[index : index + 1].numpy(),
            a_batch=batch.maps[index : index + 1].copy(),
            explain_func=explain,
            channel_first=True,
            device="cpu",
        )
    got = ours(name, batch, samples=4, radius=0.3)
    np.testing.assert_allclose(got, np.asarray(theirs, np.float64), rtol=1e-4, atol=1e-6)
    monkeypatch.setattr(sensitivity, "NOISY_BYTES", 1)  # one sample per call
    again = ours(name, batch, samples=4, radius=0.3)
    np.testing.assert_allclose(again, got, rtol=1e-5, atol=1e-7)
    later = dataclasses.replace(batch, keys=tuple(range(1, COUNT + 1)))  # other images' seeds
    assert not np.allclose(ours(name, later, samples=4, radius=0.3), got)


def test_random_logit_equals_quantus_with_each_images_seed(case) -> None:
    model, batch = case
    explain = quantus_explain(model)
    for index, seed in enumerate(batch.image_seeds()[:3]):
        one = dataclasses.replace(
            batch,
            inputs=batch.inputs[index : index + 1],
            targets=batch.targets[index : index + 1],
            maps=batch.maps[index : index + 1],
            explain=lambda x, t: explain(None, x.numpy(), t.numpy()),
            keys=(index,),
        )
        theirs = quantus.RandomLogit(num_classes=10, seed=seed, disable_warnings=True)(
            model=model.module,
            x_batch=one.inputs.numpy(),
            y_batch=one.targets.numpy(),
            a_batch=one.maps.copy(),
            explain_func=explain,
            channel_first=True,
            device="cpu",
        )
        got = ours("random-logit", one)
        np.testing.assert_allclose(got, np.asarray(theirs, np.float64), rtol=0, atol=1e-5)


def test_randomization_equals_quantus_mprt(case) -> None:
    """Per depth, the same rank correlations as Quantus's MPRT (same seed 42, same layers:
    the digits model's forward order is its `named_modules()` order)."""
    loaded, batch = case
    layers = tuple(parametrized_layers(loaded)[::-1])

    def explain(model, inputs, targets, **kwargs) -> np.ndarray:
        twin = dataclasses.replace(loaded, module=model)
        return gradcam(twin, torch.as_tensor(np.asarray(inputs)), torch.as_tensor(targets).long())

    theirs = quantus.MPRT(disable_warnings=True)(
        model=loaded.module,
        x_batch=batch.inputs.numpy(),
        y_batch=batch.targets.numpy(),
        a_batch=batch.maps.copy(),
        explain_func=explain,
        channel_first=True,
        device="cpu",
    )

    def randomized(depth: int) -> np.ndarray:
        *_, (_, _, twin) = randomized_copies(loaded.module, layers[:depth])
        return explain(twin, batch.inputs.numpy(), batch.targets.numpy())

    cascade = dataclasses.replace(batch, explain_randomized=randomized, randomizable=layers)
    got = ours("randomization", cascade)
    assert list(theirs)[1:] == list(layers) and got.layers == layers
    expected = np.array([theirs[name] for name in layers], np.float64).T
    np.testing.assert_allclose(got.similarity, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.values, np.nanmean(expected, axis=1), rtol=0, atol=1e-5)
