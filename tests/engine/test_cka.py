"""CKA between two models against a numpy reference on forward-hook features, and its
properties: 1 for a layer against itself, unchanged by an orthogonal rotation and an
isotropic scaling of the features, symmetric when the models are swapped. Predictions,
agreement, per-class accuracy and flips against each model's own predictions."""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from model_registry.datasets import DigitsDataset
from model_registry.errors import InvalidInput, NotFound
from model_registry.registry import LoadedModel
from service.engine.compare.outcome import Comparison
from service.engine.compare.plan import MEMORY_CAP_BYTES, default_layers, plan_compare
from service.engine.compare.run import compare
from service.engine.images import decode_image, preprocess
from tests.helpers import seeded_resnet
from tests.tiny_models import loaded

MAX_PIXELS = 1 << 24
COUNT = 40


class Variant(NamedTuple):
    pool: str
    debiased: bool


VARIANTS = [
    Variant("mean", False),
    Variant("mean", True),
    Variant("flatten", False),
    Variant("flatten", True),
]


def centered_gram(x: np.ndarray) -> np.ndarray:
    """X_c X_c^T of the features with their columns centered, float64 [n, n]."""
    x = x.reshape(len(x), -1).astype(np.float64)
    x = x - x.mean(0)
    return x @ x.T


def reference_cka(k: np.ndarray, l: np.ndarray, *, debiased: bool) -> float:  # noqa: E741
    """Kornblith et al.'s feature-space formula (their notebook's `feature_space_linear_cka`),
    written from the paper on centered features, through ||Y^T X||_F^2 = <X X^T, Y Y^T>
    (the features of pool=flatten are too wide for X^T Y): another way than the engine's
    streamed sums and its Gram-centering with Song et al.'s unbiased HSIC."""
    similarity = float(np.sum(k * l))
    norm_x, norm_y = np.sqrt(np.sum(k * k)), np.sqrt(np.sum(l * l))
    if debiased:
        n = len(k)
        rows_x, rows_y = np.diag(k), np.diag(l)

        def unbiased(xty: float, rx: np.ndarray, ry: np.ndarray) -> float:
            return xty - n / (n - 2) * rx @ ry + rx.sum() * ry.sum() / ((n - 1) * (n - 2))

        similarity = unbiased(similarity, rows_x, rows_y)
        norm_x = np.sqrt(unbiased(norm_x**2, rows_x, rows_x))
        norm_y = np.sqrt(unbiased(norm_y**2, rows_y, rows_y))
    return float(similarity / (norm_x * norm_y))


def hook_features(model: LoadedModel, images: list, layers: tuple[str, ...], pool: str) -> dict:
    """Each layer's output over one batch, through plain forward hooks."""
    found: dict[str, np.ndarray] = {}
    modules = dict(model.module.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: found.__setitem__(name, out.detach().float().numpy())
        )
        for name in layers
    ]
    try:
        with torch.inference_mode():
            model.module(preprocess(images, model.spec, model.device))
    finally:
        for handle in handles:
            handle.remove()
    if pool == "mean":
        return {name: value.mean(axis=(2, 3)) for name, value in found.items()}
    return found


class Rotated(nn.Module):
    """The digits net with a 1x1 convolution after relu3 that rotates the channels by an
    orthogonal matrix and scales them by 3: its output is relu3's features, rotated."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(net)
        generator = torch.Generator().manual_seed(5)
        q, _ = torch.linalg.qr(torch.randn(128, 128, generator=generator, dtype=torch.float64))
        self.rotated = nn.Conv2d(128, 128, 1, bias=False)
        with torch.no_grad():
            self.rotated.weight.copy_((3.0 * q).float()[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.pool1(n.relu1(n.bn1(n.conv1(x))))
        x = n.pool2(n.relu2(n.bn2(n.conv2(x))))
        x = n.relu3(n.bn3(n.conv3(x)))
        self.rotated(x)
        return n.fc(torch.flatten(n.avgpool(x), 1))


@pytest.fixture(scope="module")
def digits_b(digits: LoadedModel) -> LoadedModel:
    """A second digits checkpoint: the shipped weights with seeded noise on every conv."""
    module = copy.deepcopy(digits.module)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.3 * param.std() * torch.randn(param.shape, generator=generator))
    return loaded("digits-b", module, (32, 32), 10, gray=True)


@pytest.fixture(scope="module")
def rotated(digits: LoadedModel) -> LoadedModel:
    return loaded("digits-rotated", Rotated(digits.module), (32, 32), 10, gray=True)


@pytest.fixture(scope="module")
def dataset() -> DigitsDataset:
    return DigitsDataset()


def run(a: LoadedModel, b: LoadedModel, data, layers_a, layers_b, variant: Variant) -> Comparison:
    plan = plan_compare(
        a,
        b,
        data,
        layers_a=layers_a,
        layers_b=layers_b,
        pool=variant.pool,
        debiased=variant.debiased,
        limit=COUNT,
        seed=3,
    )
    return compare(a, b, data, plan, max_pixels=MAX_PIXELS)


LAYERS = ["relu1", "relu2", "relu3"]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.pool}-debiased{v.debiased}")
def test_cka_equals_the_reference_on_hook_features(
    digits: LoadedModel, digits_b: LoadedModel, dataset: DigitsDataset, variant: Variant
) -> None:
    result = run(digits, digits_b, dataset, LAYERS, LAYERS, variant)
    images = [decode_image(dataset.read(int(i)), max_pixels=MAX_PIXELS) for i in result.indices]
    assert len(images) == COUNT
    first = hook_features(digits, images, tuple(LAYERS), variant.pool)
    second = hook_features(digits_b, images, tuple(LAYERS), variant.pool)
    grams_a = {name: centered_gram(value) for name, value in first.items()}
    grams_b = {name: centered_gram(value) for name, value in second.items()}
    expected = np.array(
        [
            [reference_cka(grams_a[x], grams_b[y], debiased=variant.debiased) for y in LAYERS]
            for x in LAYERS
        ]
    )
    np.testing.assert_allclose(result.cka, expected, atol=1e-6, rtol=0)
    assert np.all(np.abs(result.cka) <= 1 + 1e-9)
    assert not np.allclose(np.diag(result.cka), 1.0, atol=1e-3)  # other weights differ


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.pool}-debiased{v.debiased}")
def test_a_model_against_itself_and_swapped(
    digits: LoadedModel, digits_b: LoadedModel, dataset: DigitsDataset, variant: Variant
) -> None:
    itself = run(digits, digits, dataset, LAYERS, LAYERS, variant)
    np.testing.assert_allclose(np.diag(itself.cka), 1.0, atol=1e-6)
    np.testing.assert_allclose(itself.cka, itself.cka.T, atol=1e-9)
    assert itself.agreement() == 1.0 and itself.flips() == []
    assert itself.drift == pytest.approx(dict.fromkeys(LAYERS, 0.0))
    forward = run(digits, digits_b, dataset, LAYERS, LAYERS[:2], variant)
    backward = run(digits_b, digits, dataset, LAYERS[:2], LAYERS, variant)
    np.testing.assert_allclose(forward.cka, backward.cka.T, atol=1e-9)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.pool}-debiased{v.debiased}")
def test_cka_is_unchanged_by_rotation_and_scaling(
    rotated: LoadedModel, digits_b: LoadedModel, dataset: DigitsDataset, variant: Variant
) -> None:
    result = run(rotated, digits_b, dataset, ["net.relu2", "net.relu3", "rotated"], LAYERS, variant)
    np.testing.assert_allclose(result.cka[2], result.cka[1], atol=1e-6)
    assert abs(result.cka[1] - result.cka[0]).max() > 1e-3  # the rows do tell layers apart


def test_predictions_flips_and_classes_equal_each_models_own(
    digits: LoadedModel, digits_b: LoadedModel, dataset: DigitsDataset
) -> None:
    result = run(digits, digits_b, dataset, None, None, Variant("mean", False))
    images = [decode_image(dataset.read(int(i)), max_pixels=MAX_PIXELS) for i in result.indices]
    labels = np.array([dataset.label(int(i)) for i in result.indices])
    own = []
    for model in (digits, digits_b):
        with torch.inference_mode():
            logits = model.module(preprocess(images, model.spec, model.device))
        own.append(logits.softmax(1).numpy())
    guess_a, guess_b = own[0].argmax(1), own[1].argmax(1)
    assert result.accuracy(result.a) == pytest.approx((guess_a == labels).mean())
    assert result.accuracy(result.b) == pytest.approx((guess_b == labels).mean())
    assert result.agreement() == pytest.approx((guess_a == guess_b).mean())
    flips = result.flips()
    assert {f.index for f in flips} == set(result.indices[guess_a != guess_b].tolist())
    assert flips, "the noisy checkpoint flips some digits"
    changes = [f.change for f in flips]
    assert changes == sorted(changes, reverse=True)
    for flip in flips:
        row = int(np.flatnonzero(result.indices == flip.index)[0])
        assert flip.predicted_a == str(guess_a[row]) and flip.predicted_b == str(guess_b[row])
        assert flip.probability_a == pytest.approx(own[0][row].max(), abs=1e-6)
        assert flip.change == pytest.approx(
            abs(own[0][row, labels[row]] - own[1][row, labels[row]]), abs=1e-6
        )
    for row in result.per_class():
        mask = labels == int(row.name)
        assert row.count == mask.sum()
        assert row.accuracy_a == pytest.approx((guess_a[mask] == labels[mask]).mean())
        assert row.accuracy_b == pytest.approx((guess_b[mask] == labels[mask]).mean())
    assert sum(row.count for row in result.per_class()) == COUNT


def test_drift_is_the_mean_relative_change(
    digits: LoadedModel, digits_b: LoadedModel, dataset: DigitsDataset
) -> None:
    result = run(digits, digits_b, dataset, LAYERS, LAYERS[1:], Variant("mean", False))
    assert set(result.drift) == {"relu2", "relu3"}
    images = [decode_image(dataset.read(int(i)), max_pixels=MAX_PIXELS) for i in result.indices]
    first = hook_features(digits, images, ("relu2",), "flatten")["relu2"].reshape(COUNT, -1)
    second = hook_features(digits_b, images, ("relu2",), "flatten")["relu2"].reshape(COUNT, -1)
    expected = np.mean(np.linalg.norm(first - second, axis=1) / np.linalg.norm(first, axis=1))
    assert result.drift["relu2"] == pytest.approx(expected, rel=1e-5)


def test_default_layers_are_top_level_stages(digits: LoadedModel, resnet: LoadedModel) -> None:
    assert default_layers(resnet) == ["layer1", "layer2", "layer3", "layer4"]
    assert "relu3" in default_layers(digits) and "fc" not in default_layers(digits)


def test_bad_plans_name_the_field(digits: LoadedModel, dataset: DigitsDataset) -> None:
    def plan(**changes):
        options = dict(layers_a=None, layers_b=None, pool="mean", debiased=False, limit=10, seed=0)
        return plan_compare(digits, digits, dataset, **{**options, **changes})

    with pytest.raises(NotFound) as unknown:
        plan(layers_b=["relu9"])
    assert unknown.value.field == "layers_b" and "relu9" in unknown.value.detail
    with pytest.raises(InvalidInput) as empty:
        plan(layers_a=[])
    assert empty.value.field == "layers_a"
    with pytest.raises(InvalidInput) as big:
        plan(pool="flatten", limit=None, debiased=True)
    assert big.value.field == "pool"
    assert big.value.extra["cap_bytes"] == MEMORY_CAP_BYTES
    assert big.value.extra["requested_bytes"] > MEMORY_CAP_BYTES


def test_resnet18_against_other_weights_equals_the_reference(
    resnet: LoadedModel, dataset: DigitsDataset
) -> None:
    """Two seeded resnet18s (the second with other weights) at 64 px, their stages."""
    other = loaded("resnet-other", seeded_resnet(8, num_classes=1000), (64, 64), 1000)
    stages = ("layer1", "layer2", "layer3", "layer4")
    plan = plan_compare(
        resnet,
        other,
        dataset,
        layers_a=None,
        layers_b=None,
        pool="mean",
        debiased=False,
        limit=8,
        seed=1,
    )
    assert plan.layers_a == stages and plan.drift == stages
    result = compare(resnet, other, dataset, plan, max_pixels=MAX_PIXELS)
    images = [decode_image(dataset.read(int(i)), max_pixels=MAX_PIXELS) for i in result.indices]
    first = hook_features(resnet, images, stages, "mean")
    second = hook_features(other, images, stages, "mean")
    expected = [
        [
            reference_cka(centered_gram(first[x]), centered_gram(second[y]), debiased=False)
            for y in stages
        ]
        for x in stages
    ]
    np.testing.assert_allclose(result.cka, expected, atol=1e-6, rtol=0)
    assert all(value > 0.05 for value in result.drift.values())
