"""Engine-level tests of model insight: values, shapes, determinism, and the shared model
left exactly as found (hooks, grads, modes), also when a computation is cancelled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from model_registry.config import load_config
from model_registry.errors import InvalidInput, NotFound
from model_registry.registry import LoadedModel, load_model
from service.engine.images import preprocess
from service.engine.insight import cost
from service.engine.insight.embedding import final_classifier, plan_embedding
from service.engine.insight.filters import get_filters, kernel_layers, plan_filters, render_filters
from service.engine.insight.forward import layer_tensor
from service.engine.insight.invert import invert, plan_invert
from service.engine.insight.maximize import maximize, plan_maximize
from service.engine.insight.stats import compute_stats, plan_stats
from service.engine.insight.transforms import FourierImage, TransformOptions, random_transform
from service.engine.progress import Cancelled
from tests.insight_support import (
    assert_same_state,
    model_state,
    noise_images,
    one_torch_thread,
    photo,
    write_models,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    specs = load_config(write_models(tmp_path_factory.mktemp("models")))
    return {spec.name: load_model(spec, torch.device("cpu")) for spec in specs}


@pytest.fixture(scope="module")
def digits_model(models: dict[str, LoadedModel]) -> LoadedModel:
    return models["digits"]


@pytest.fixture(scope="module")
def tiny_resnet(models: dict[str, LoadedModel]) -> LoadedModel:
    return models["tinyres"]


def _noise_mean(model: LoadedModel, layer: str, channel: int) -> float:
    """Mean activation of one channel over 16 uniform-noise images, computed independently."""
    spec = model.spec
    noise = torch.from_numpy(noise_images(16, spec.in_channels, spec.input_size))
    batch = (noise - torch.tensor(spec.mean).view(1, -1, 1, 1)) / torch.tensor(spec.std).view(
        1, -1, 1, 1
    )
    calls = model.catalog.get(layer).calls
    with torch.inference_mode():
        return float(layer_tensor(model.module, batch, layer, calls=calls)[:, channel].mean())


def _activation(model: LoadedModel, image: np.ndarray, layer: str, channel: int) -> float:
    spec = model.spec
    pixels = torch.from_numpy(image)[None]
    batch = (pixels - torch.tensor(spec.mean).view(1, -1, 1, 1)) / torch.tensor(spec.std).view(
        1, -1, 1, 1
    )
    with torch.inference_mode():
        out = layer_tensor(model.module, batch, layer, calls=model.catalog.get(layer).calls)
    return float(out[:, channel].mean())


# --- filters -------------------------------------------------------------------------------


def test_kernel_layers_are_the_convolutions(
    digits_model: LoadedModel, tiny_resnet: LoadedModel
) -> None:
    assert kernel_layers(digits_model) == ["conv1", "conv2", "conv3"]
    resnet_convs = [n for n, m in tiny_resnet.module.named_modules() if isinstance(m, nn.Conv2d)]
    assert sorted(kernel_layers(tiny_resnet)) == sorted(resnet_convs)
    assert kernel_layers(tiny_resnet)[0] == "conv1"


def test_filters_npy_default_is_the_weight_tensor_exactly(tiny_resnet: LoadedModel) -> None:
    plan = plan_filters(tiny_resnet, layer="layer1.0.conv1", channels=None, fmt="npy")
    filters = get_filters(tiny_resnet, plan)
    weight = tiny_resnet.module.get_submodule("layer1.0.conv1").weight
    assert filters.weight.dtype == np.float32
    assert filters.weight.shape == (64, 64, 3, 3)
    np.testing.assert_array_equal(filters.weight, weight.detach().numpy())
    assert filters.channels.tolist() == list(range(64))


class Selection(NamedTuple):
    channels: str
    expected: list[int] | None  # None: ranked by norm, checked separately


@pytest.mark.parametrize(
    "case",
    [
        Selection("0,3,8-10", [0, 3, 8, 9, 10]),
        Selection("first:4", [0, 1, 2, 3]),
        Selection("last:2", [30, 31]),
    ],
    ids=lambda c: c.channels,
)
def test_filters_channel_grammar(digits_model: LoadedModel, case: Selection) -> None:
    filters = get_filters(
        digits_model, plan_filters(digits_model, layer="conv1", channels=case.channels)
    )
    assert filters.channels.tolist() == case.expected
    weight = digits_model.module.conv1.weight.detach().numpy()
    np.testing.assert_array_equal(filters.weight, weight[case.expected])


def test_filters_top_ranks_by_kernel_norm(digits_model: LoadedModel) -> None:
    filters = get_filters(digits_model, plan_filters(digits_model, layer="conv2", channels="top:5"))
    norms = digits_model.module.conv2.weight.detach().flatten(1).norm(dim=1)
    assert filters.channels.tolist() == norms.argsort(descending=True)[:5].tolist()


def test_filters_pictures(digits_model: LoadedModel, tiny_resnet: LoadedModel) -> None:
    rgb = plan_filters(tiny_resnet, layer="conv1", channels="first:16")
    assert rgb.view == "rgb"  # first layer over RGB: colour patches
    picture = render_filters(get_filters(tiny_resnet, rgb), rgb)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    deep = plan_filters(
        digits_model, layer="conv2", channels="first:4", view="inputs", inputs="first:5"
    )
    strips = render_filters(get_filters(digits_model, deep), deep, upsample=24, labels=False)
    # 4 rows of 5 tiles of 24 px (3x3 kernels enlarged by 8): taller than wide is impossible
    assert strips.shape[1] > 5 * 24 and strips.shape[0] > 4 * 24
    mean = plan_filters(digits_model, layer="conv3", channels=None)
    assert mean.view == "mean" and mean.selection.count == 64  # first:64 for a picture


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"layer": "relu1", "channels": None}, InvalidInput, "layer"),
        ({"layer": "fc", "channels": None}, InvalidInput, "layer"),
        ({"layer": "nope", "channels": None}, NotFound, "layer"),
        ({"layer": "conv1", "channels": "32"}, InvalidInput, "channels"),
        ({"layer": "conv2", "channels": "all", "view": "rgb"}, InvalidInput, "view"),
        ({"layer": "conv2", "channels": "all", "inputs": "32"}, InvalidInput, "inputs"),
    ],
)
def test_filters_errors(digits_model: LoadedModel, kwargs: dict, error: type, field: str) -> None:
    with pytest.raises(error) as info:
        plan_filters(digits_model, **kwargs)
    assert info.value.field == field
    if kwargs["layer"] in ("relu1", "fc"):
        assert info.value.extra["layers_with_weights"] == ["conv1", "conv2", "conv3"]


# --- maximize ------------------------------------------------------------------------------


def test_fourier_image_is_in_range_and_seeded(tiny_resnet: LoadedModel) -> None:
    images = [
        FourierImage(
            3, (40, 33), generator=torch.Generator().manual_seed(s), device=torch.device("cpu")
        )
        .pixels()
        .detach()
        for s in (1, 1, 2)
    ]
    assert images[0].shape == (1, 3, 40, 33)
    assert float(images[0].min()) >= 0 and float(images[0].max()) <= 1
    assert torch.equal(images[0], images[1]) and not torch.equal(images[0], images[2])
    moved = random_transform(images[0], torch.Generator().manual_seed(0), TransformOptions())
    assert moved.shape == images[0].shape


def test_maximize_same_seed_same_image(digits_model: LoadedModel) -> None:
    plan = plan_maximize(digits_model, layer="relu2", channel=3, steps=24)
    first, second = maximize(digits_model, plan), maximize(digits_model, plan)
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.curve, second.curve)
    other = maximize(
        digits_model, plan_maximize(digits_model, layer="relu2", channel=3, steps=24, seed=1)
    )
    assert not np.array_equal(first.image, other.image)


def test_maximize_excites_its_channel_far_more_than_noise(digits_model: LoadedModel) -> None:
    """The acceptance bar (>= 5x the mean activation of noise), over 16 channels of the last block.

    The ratio depends on the channel: a few channels respond to high-frequency texture that
    noise already provides and that the Fourier parameterization damps; they still gain.
    """
    ratios = []
    for channel in range(16):
        result = maximize(
            digits_model, plan_maximize(digits_model, layer="relu3", channel=channel, steps=192)
        )
        achieved = _activation(digits_model, result.image, "relu3", channel)
        assert achieved == pytest.approx(result.activation, rel=1e-4, abs=1e-5)
        ratios.append(achieved / _noise_mean(digits_model, "relu3", channel))
    ratios = np.array(ratios)
    assert (ratios >= 5).mean() >= 0.75, ratios.round(1)
    assert ratios.min() >= 2, ratios.round(1)
    assert np.median(ratios) >= 5, ratios.round(1)


def test_maximize_curve_rises_and_image_shape(tiny_resnet: LoadedModel) -> None:
    plan = plan_maximize(tiny_resnet, layer="layer2", channel=7, steps=48, size=48)
    result = maximize(tiny_resnet, plan)
    assert result.image.shape == (3, 48, 48) and result.image.dtype == np.float32
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert result.curve.shape == (48,)
    assert result.curve[-8:].mean() > result.curve[:8].mean()
    assert result.activation > result.noise_activation


def test_maximize_neuron_and_direction(digits_model: LoadedModel) -> None:
    neuron = plan_maximize(digits_model, layer="relu3", channel=2, neuron="3,4", steps=32)
    assert neuron.neuron == (3, 4)
    assert maximize(digits_model, neuron).activation > 0
    weights = ",".join("1" if c in (1, 2) else "0" for c in range(128))
    direction = plan_maximize(digits_model, layer="relu3", direction=weights, steps=32)
    assert direction.direction is not None and direction.direction[1] == pytest.approx(2**-0.5)
    result = maximize(digits_model, direction)
    assert result.activation > result.noise_activation
    logit = maximize(digits_model, plan_maximize(digits_model, layer="fc", channel=3, steps=64))
    assert logit.activation > logit.noise_activation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"channel": 128}, "channel"),
        ({}, "channel"),
        ({"channel": 1, "direction": "1"}, "direction"),
        ({"direction": "1,2"}, "direction"),
        ({"direction": ",".join(["0"] * 128)}, "direction"),
        ({"direction": ",".join(["nan"] * 128)}, "direction"),
        ({"channel": 0, "steps": 5000}, "steps"),
        ({"channel": 0, "steps": 0}, "steps"),
        ({"channel": 0, "size": 4}, "size"),
        ({"channel": 0, "size": 1024}, "size"),
        ({"channel": 0, "lr": float("inf")}, "lr"),
        ({"channel": 0, "lr": 0.0}, "lr"),
        ({"channel": 0, "tv": float("nan")}, "tv"),
        ({"channel": 0, "neuron": "8,0"}, "neuron"),
        ({"channel": 0, "neuron": "1"}, "neuron"),
        ({"channel": 0, "neuron": "-1,2"}, "neuron"),
    ],
)
def test_maximize_validation(digits_model: LoadedModel, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        plan_maximize(digits_model, layer="relu3", **kwargs)
    assert info.value.field == field


def test_maximize_neuron_range_follows_size(digits_model: LoadedModel) -> None:
    plan_maximize(digits_model, layer="relu3", channel=0, neuron="15,15", size=64)
    with pytest.raises(InvalidInput):
        plan_maximize(digits_model, layer="relu3", channel=0, neuron="15,15")
    with pytest.raises(InvalidInput):
        plan_maximize(digits_model, layer="fc", channel=0, neuron="0,0")


# --- invert --------------------------------------------------------------------------------


def test_inversion_drops_the_feature_distance_by_90_percent(digits_model: LoadedModel) -> None:
    batch = preprocess([photo()], digits_model.spec, digits_model.device)
    result = invert(digits_model, batch, plan_invert(digits_model, layer="relu2"))
    assert result.distance.shape == (201,) and result.loss.shape == (200,)
    assert result.distance_drop >= 0.9, result.distance_drop
    assert result.image.shape == (1, 32, 32) and result.image.min() >= 0 and result.image.max() <= 1


def test_shallow_layers_reconstruct_closer_to_the_photo(
    digits_model: LoadedModel, tiny_resnet: LoadedModel
) -> None:
    for model, layers in (
        (digits_model, ["conv1", "relu2", "relu3"]),
        (tiny_resnet, ["conv1", "layer1", "layer3"]),
    ):
        batch = preprocess([photo()], model.spec, model.device)
        errors = []
        for layer in layers:
            result = invert(model, batch, plan_invert(model, layer=layer, steps=100))
            errors.append(float(np.sqrt(((result.image - result.original) ** 2).mean())))
        assert errors == sorted(errors), (model.name, errors)
        assert errors[0] < 0.5 * errors[-1], (model.name, errors)


def test_inversion_validation(digits_model: LoadedModel) -> None:
    for kwargs, field in (
        ({"steps": 10_000}, "steps"),
        ({"tv": -1.0}, "tv"),
        ({"alpha": float("inf")}, "alpha"),
    ):
        with pytest.raises(InvalidInput) as info:
            plan_invert(digits_model, layer="relu2", **kwargs)
        assert info.value.field == field
    with pytest.raises(NotFound):
        plan_invert(digits_model, layer="relu9")


# --- shared model left as found -----------------------------------------------------------


def test_insight_leaves_the_shared_model_as_found(
    digits_model: LoadedModel, tiny_resnet: LoadedModel
) -> None:
    for model in (digits_model, tiny_resnet):
        before = model_state(model.module)
        batch = preprocess([photo()], model.spec, model.device)
        layer = model.catalog.last_spatial_layer().name
        maximize(model, plan_maximize(model, layer=layer, channel=1, steps=3))
        invert(model, batch, plan_invert(model, layer=layer, steps=3))
        compute_stats(model, batch, plan_stats(model, []))
        assert_same_state(before, model_state(model.module))


def test_cancellation_between_steps_leaves_the_model_clean(digits_model: LoadedModel) -> None:
    before = model_state(digits_model.module)
    seen = []

    def progress(step: int, total: int) -> None:
        seen.append((step, total))
        if step == 5:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        maximize(
            digits_model,
            plan_maximize(digits_model, layer="relu3", channel=0, steps=50),
            progress=progress,
        )
    batch = preprocess([photo()], digits_model.spec, digits_model.device)
    with pytest.raises(Cancelled):
        invert(
            digits_model,
            batch,
            plan_invert(digits_model, layer="relu3", steps=50),
            progress=progress,
        )
    assert seen[:5] == [(i, 50) for i in range(1, 6)]
    assert_same_state(before, model_state(digits_model.module))


# --- stats ---------------------------------------------------------------------------------


def _reference_outputs(
    model: LoadedModel, batch: torch.Tensor, names: list[str]
) -> dict[str, torch.Tensor]:
    """Clones taken in the hook, so later in-place ops cannot change them."""
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(model.module.named_modules())
    handles = [
        modules[n].register_forward_hook(
            lambda _m, _i, out, n=n: outputs.__setitem__(n, out.detach().clone())
        )
        for n in names
    ]
    try:
        with torch.inference_mode():
            model.module(batch)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def test_stats_match_a_direct_computation(
    digits_model: LoadedModel, tiny_resnet: LoadedModel
) -> None:
    from service.samples import digit_samples

    cases = (
        (digits_model, list(digit_samples(6).values()), ["conv1", "relu1", "relu2", "relu3", "fc"]),
        # bn1 is followed by an in-place ReLU: statistics must describe bn1's own output.
        (
            tiny_resnet,
            [photo("china.jpg"), photo("flower.jpg")],
            ["bn1", "relu", "layer1", "layer3", "fc"],
        ),
    )
    for model, images, names in cases:
        batch = preprocess(images, model.spec, model.device)
        stats = {s.name: s for s in compute_stats(model, batch, plan_stats(model, names))}
        reference = _reference_outputs(model, batch, names)
        for name in names:
            out = reference[name].double()
            got = stats[name]
            assert got.sparsity == pytest.approx(float((out <= 0).double().mean()))
            assert got.mean == pytest.approx(float(out.mean()), rel=1e-6, abs=1e-9)
            assert got.std == pytest.approx(float(out.std(unbiased=False)), rel=1e-5)
            assert got.max == pytest.approx(float(out.max()))
            per_channel = out.transpose(0, 1).reshape(out.shape[1], -1)
            np.testing.assert_allclose(
                got.channel_means, per_channel.mean(dim=1).numpy(), rtol=1e-5, atol=1e-6
            )
            dead = float((~(per_channel > 0).any(dim=1)).double().mean())
            after_relu = "relu" in name or float(out.min()) >= 0
            assert got.dead_fraction == (pytest.approx(dead) if after_relu else None)
            edges, counts = got.histogram
            assert counts.sum() == out.numel() and len(edges) == len(counts) + 1 == 33
            assert edges[0] == pytest.approx(float(out.min()), rel=1e-5, abs=1e-6)
            assert edges[-1] == pytest.approx(float(out.max()), rel=1e-5, abs=1e-6)
            expected, _ = np.histogram(out.float().numpy(), bins=edges.astype(np.float32))
            assert np.abs(counts - expected).sum() <= 2  # float32 rounding at bin edges
        # logits and a convolution before batch norm have no dead channels to speak of
        assert stats["fc"].dead_fraction is None
        assert stats["bn1" if model is tiny_resnet else "conv1"].sparsity < 0.9


def test_stats_default_is_every_layer_in_forward_order(digits_model: LoadedModel) -> None:
    layers = plan_stats(digits_model, [])
    assert layers[0] == "conv1" and layers[-1] == "fc" and len(layers) == 13
    assert plan_stats(digits_model, ["relu3", "conv1"]) == ("conv1", "relu3")
    with pytest.raises(NotFound):
        plan_stats(digits_model, ["conv9"])


# --- embedding and cost ----------------------------------------------------------------------


def test_embedding_defaults_to_the_final_classifier_input(
    digits_model: LoadedModel, tiny_resnet: LoadedModel
) -> None:
    assert final_classifier(digits_model) == "fc" and final_classifier(tiny_resnet) == "fc"
    plan = plan_embedding(
        digits_model, layer=None, method="tsne", seed=0, perplexity=None, count=10
    )
    assert (plan.layer, plan.take) == ("fc", "input")
    assert plan.perplexity == pytest.approx(3.0)
    with pytest.raises(InvalidInput):
        plan_embedding(digits_model, layer=None, method="tsne", seed=0, perplexity=10.0, count=10)
    with pytest.raises(InvalidInput):
        plan_embedding(digits_model, layer=None, method="pca", seed=0, perplexity=None, count=1)


def test_flop_count_of_the_digits_model(digits_model: LoadedModel) -> None:
    convs = 2 * (32 * 32 * 32 * 9 + 64 * 16 * 16 * 32 * 9 + 128 * 8 * 8 * 64 * 9)
    assert cost.forward_flops(digits_model) == convs + 2 * 128 * 10
    assert cost.forward_flops(digits_model, upto="relu1") == 2 * 32 * 32 * 32 * 9
    assert cost.forward_flops(digits_model, (64, 64)) == 4 * convs + 2 * 128 * 10


def test_maximize_size_the_model_cannot_run_is_a_422() -> None:
    from model_registry.catalog import build_catalog
    from model_registry.spec import ModelSpec

    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3)
        )
    module.eval().requires_grad_(False)
    spec = ModelSpec("fixed", "builtin:none", None, (16, 16), (0.5,), (0.5,), 3)
    catalog = build_catalog("fixed", module, (1, 16, 16), torch.device("cpu"))
    model = LoadedModel(spec, module, torch.device("cpu"), catalog, False, None)
    assert plan_maximize(model, layer="1", channel=0, size=24).size == (
        24,
        24,
    )  # before the flatten
    with pytest.raises(InvalidInput) as info:
        plan_maximize(model, layer="3", channel=0, size=24)
    assert info.value.field == "size"
    result = maximize(model, plan_maximize(model, layer="3", channel=2, steps=20))
    assert result.activation > result.noise_activation
