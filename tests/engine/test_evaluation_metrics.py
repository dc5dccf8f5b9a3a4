"""The evaluation metric registry, its parameters, the randomization cascade, and the
known answers of deletion and insertion on the digits model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.chunks import CPU_ROWS, MAX_ROWS, rows_per_chunk
from service.engine.attribution.faithfulness import deletion_insertion
from service.engine.attribution.sanity import parametrized_layers
from service.engine.evaluation.cascade import randomized_copies
from service.engine.evaluation.metrics import (
    FAMILIES,
    METRICS,
    get_metric,
    metric_names,
    resolve_parameters,
)
from tests.engine.evaluation_support import digits_inputs, eval_batch, gradcam
from tests.tiny_models import loaded, seeded


def test_every_metric_is_listed_with_a_family_and_a_reference() -> None:
    names = metric_names()
    assert set(names) == set(METRICS) and {"deletion", "insertion"} <= set(names)
    for name in names:
        metric = get_metric(name)
        assert metric.family in FAMILIES and metric.reference and metric.name == name
        assert metric.needs <= {"masks", "explain", "explain_randomized"}


def test_unknown_metric_names_the_valid_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        get_metric("deletio")
    assert caught.value.field == "metrics" and "deletion" in str(caught.value)
    assert "did you mean 'deletion'" in str(caught.value)


def test_parameters_are_checked_by_name_and_range() -> None:
    metric = get_metric("deletion")
    assert resolve_parameters(metric, {}) == {"steps": 32}
    assert resolve_parameters(metric, {"steps": "8"}) == {"steps": 8}
    assert resolve_parameters(metric, {"steps": 8.0}) == {"steps": 8}
    for bad in ({"steps": 1}, {"steps": 100000}, {"steps": "many"}, {"stepz": 8}, {"steps": 2.5}):
        with pytest.raises(InvalidInput) as caught:
            resolve_parameters(metric, bad)
        assert caught.value.field in ("steps", "stepz")
    road = get_metric("road-combined")
    assert resolve_parameters(road, {"road_percentiles": "20,50"})["road_percentiles"] == (20, 50)
    for bad in ("20,150", "", ",".join(["10"] * 21), "a,b"):
        with pytest.raises(InvalidInput) as caught:
            resolve_parameters(road, {"road_percentiles": bad})
        assert caught.value.field == "road_percentiles"
    assert resolve_parameters(road, {"road_percentiles": 50})["road_percentiles"] == (50,)
    for given in ({"road_noise": True}, {"road_percentiles": "9" * 5000}):
        with pytest.raises(InvalidInput) as caught:
            resolve_parameters(road, given)
        message = str(caught.value)
        assert caught.value.field in given and len(message) < 200
        assert "[0, 10]" in message or "[0, 100]" in message  # the valid range, named


@pytest.fixture(scope="module")
def digits_gradcam(digits: LoadedModel):
    inputs, targets = digits_inputs(digits, 16)
    return inputs, targets, gradcam(digits, inputs, targets)


def test_deletion_and_insertion_are_the_trust_views(digits: LoadedModel, digits_gradcam) -> None:
    inputs, targets, maps = digits_gradcam
    inputs, targets, maps = inputs[:4], targets[:4], maps[:4]
    batch = eval_batch(digits, inputs, targets, maps)
    params = {"steps": 8}
    direct = deletion_insertion(
        digits.module, inputs, torch.from_numpy(maps), targets[:, None], steps=8
    )
    for name in ("deletion", "insertion"):
        got = get_metric(name).compute(batch, params)
        assert got.shape == (4,) and got.dtype == np.float64
        np.testing.assert_allclose(got, direct.auc[name][:, 0].numpy(), rtol=1e-6, atol=1e-7)
    signed = np.repeat(maps, 3, axis=1) * np.array([1, -1, 1])[:, None, None]
    channels = eval_batch(digits, inputs, targets, signed)
    np.testing.assert_allclose(  # |values| summed over channels ranks pixels as the map does
        get_metric("deletion").compute(channels, params),
        get_metric("deletion").compute(batch, params),
        rtol=1e-6,
    )


def coarse_random(count: int, seed: int) -> np.ndarray:
    """Random maps as smooth as a relu3 CAM: 8 x 8 noise upsampled like one."""
    noise = torch.rand(count, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=(32, 32), mode="bilinear").numpy()


def test_a_random_map_deletes_worse_than_gradcam(digits: LoadedModel, digits_gradcam) -> None:
    """Against random maps of a CAM's own smoothness (pixel-wise noise breaks the strokes
    everywhere at once, which deletion rewards: the reason ROAD exists)."""
    inputs, targets, maps = digits_gradcam
    metric = get_metric("deletion")
    ours = metric.compute(eval_batch(digits, inputs, targets, maps), {"steps": 8})
    random = [
        metric.compute(eval_batch(digits, inputs, targets, coarse_random(16, s)), {"steps": 8})
        for s in range(3)
    ]
    assert ours.mean() < np.mean(random)


def test_cascade_randomizes_one_more_layer_of_a_copy(digits: LoadedModel) -> None:
    before = {k: v.clone() for k, v in digits.module.state_dict().items()}
    layers = parametrized_layers(digits)[::-1]
    seen = []
    for depth, name, twin in randomized_copies(digits.module, layers[:3]):
        state = twin.state_dict()
        changed = {k.split(".")[0] for k, v in before.items() if not torch.equal(state[k], v)}
        assert changed == set(layers[:depth]) and name == layers[depth - 1]
        assert twin is not digits.module and not twin.training
        seen.append(depth)
    assert seen == [1, 2, 3]
    for key, value in digits.module.state_dict().items():
        assert torch.equal(before[key], value)
    assert all(not m._forward_hooks for m in digits.module.modules())


def test_the_docs_table_names_every_metric_and_its_reference() -> None:
    text = (Path(__file__).parents[2] / "docs" / "evaluation.md").read_text()
    for name in metric_names():
        metric = get_metric(name)
        better = "yes" if metric.higher_is_better else "no"
        row = f"| `{name}` | {metric.family} | {metric.reference} | {better} |"
        assert row in text, row


def test_a_small_model_gets_larger_passes_and_a_large_one_keeps_the_cap(digits) -> None:
    for graph in (False, True):
        assert rows_per_chunk(digits, graph=graph) == MAX_ROWS == 64
    wide = seeded(
        lambda: nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 2),
        )
    )
    large = loaded("wide", wide, (256, 256), 2)  # 16 x 256 x 256 activations: 1M per row
    for graph in (False, True):
        assert rows_per_chunk(large, graph=graph) == CPU_ROWS == 8
