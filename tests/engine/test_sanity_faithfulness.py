"""Sanity check under model randomization (Adebayo et al. 2018) and deletion/insertion AUC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam
from service.engine.attribution.faithfulness import deletion_insertion
from service.engine.attribution.maps import cam_maps
from service.engine.attribution.plan import plan_cam
from service.engine.attribution.sanity import parametrized_layers, randomized_copy, rank_correlation
from service.samples import digit_samples
from tests.routes.test_attributions import post
from tests.tiny_models import model_batch


def digits_batch(model: LoadedModel, count: int = 10) -> torch.Tensor:
    return model_batch(model, list(digit_samples(count).values()))


def test_parametrized_layers_in_forward_order(digits: LoadedModel) -> None:
    assert parametrized_layers(digits) == ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "fc"]


def test_randomized_copy_changes_only_the_top_layers_of_a_copy(digits: LoadedModel) -> None:
    before = {k: v.clone() for k, v in digits.module.state_dict().items()}
    copy, names = randomized_copy(digits, 3)
    assert names == ["fc", "bn3", "conv3"]
    assert copy.module is not digits.module and copy.catalog is digits.catalog
    after = copy.module.state_dict()
    changed = {key for key, value in before.items() if not torch.equal(after[key], value)}
    top = {f"{layer}.{p}" for layer in ("fc", "conv3", "bn3") for p in ("weight", "bias")}
    assert top | {"bn3.running_mean", "bn3.running_var"} <= changed
    assert {key.split(".")[0] for key in changed} == {"fc", "conv3", "bn3"}
    for key, value in before.items():  # the shared model itself is untouched
        assert torch.equal(digits.module.state_dict()[key], value)
    assert not any(p.requires_grad for p in copy.module.parameters()) and not copy.module.training


def test_gradcam_changes_when_top_layers_are_randomized(digits: LoadedModel) -> None:
    """The Adebayo check passes for Grad-CAM: the maps decorrelate, the inputs are unchanged."""
    batch = digits_batch(digits)
    original = batch.clone()
    plan = plan_cam(digits, method="gradcam", layers=["relu3"], randomize=3)
    result = compute_cam(digits, batch, plan, inputs=np.zeros((10, 32, 32, 3), np.uint8))
    assert result.randomized == ("fc", "bn3", "conv3")
    correlation = result.layers[0].rank_correlation
    assert correlation.shape == (10, 1)
    assert np.nanmean(correlation) < 0.5
    assert torch.equal(batch, original)
    again = cam_maps(digits, batch, "gradcam", ("relu3",), ())
    np.testing.assert_allclose(
        again.maps["relu3"].numpy(), result.layers[0].maps, rtol=1e-5, atol=1e-6
    )
    identical = rank_correlation(result.layers[0].maps, result.layers[0].maps)
    assert np.allclose(identical[~np.isnan(identical)], 1)


def test_randomize_over_http(app_client, digit_pngs: list[bytes]) -> None:
    body = post(
        app_client, "/v1/models/digits/cam?format=json&randomize=2&target=3,8", digit_pngs[:2]
    ).json()
    assert body["randomized_layers"] == ["fc", "bn3"]
    values = [m["rank_correlation"] for m in body["maps"]]
    assert len(values) == 4 and all(v is None or -1 <= v <= 1 for v in values)
    body = post(
        app_client, "/v1/models/digits/gradients?format=json&randomize=1", digit_pngs[:1]
    ).json()
    assert body["randomized_layers"] == ["fc"] and body["maps"][0]["rank_correlation"] is not None


@pytest.fixture(scope="module")
def thirty_digits(digits: LoadedModel) -> torch.Tensor:
    from sklearn.datasets import load_digits

    from model_registry.builtin.digits import digit_image

    data = load_digits()
    return model_batch(digits, [digit_image(data.images[i]) for i in range(30)])


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
def test_cams_beat_random_maps_on_deletion_and_insertion(
    method: str, digits: LoadedModel, thirty_digits: torch.Tensor
) -> None:
    """Lower deletion AUC and higher insertion AUC than random maps, pixel-wise random and
    random at the layer's own 8 x 8 resolution (upsampled like a CAM)."""
    batch = thirty_digits
    raw = cam_maps(digits, batch, method, ("relu3",), ())
    maps = raw.maps["relu3"]
    cam = deletion_insertion(digits.module, batch, maps, raw.targets, steps=16)
    generator = torch.Generator().manual_seed(0)
    randoms = {
        "pixels": torch.rand(maps.shape, generator=generator),
        "8x8": F.interpolate(
            torch.rand(30, 1, 8, 8, generator=generator), size=(32, 32), mode="bilinear"
        ),
    }
    for name, noise in randoms.items():
        random = deletion_insertion(digits.module, batch, noise, raw.targets, steps=16)
        assert cam.auc["deletion"].mean() < random.auc["deletion"].mean(), name
        assert cam.auc["insertion"].mean() > random.auc["insertion"].mean(), name
    curve = cam.curves["deletion"]
    assert curve.shape == (30, 1, 17)
    with torch.no_grad():
        probabilities = digits.module(batch).softmax(1).gather(1, raw.targets)
    torch.testing.assert_close(curve[:, :, 0], probabilities)  # nothing deleted yet


def test_metrics_over_http(app_client, digit_pngs: list[bytes]) -> None:
    url = "/v1/models/digits/cam?format=json&metrics=deletion,insertion&metric_steps=8"
    body = post(app_client, url, digit_pngs[:3]).json()
    for item in body["maps"]:
        assert 0 <= item["deletion"] <= 1 and 0 <= item["insertion"] <= 1
    only = post(app_client, url.replace("deletion,insertion", "insertion"), digit_pngs[:1]).json()
    assert only["maps"][0]["deletion"] is None and only["maps"][0]["insertion"] is not None
