"""Input-space perturbation methods against Captum, on tiny seeded models."""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import pytest
import torch
from captum.attr import (
    DeepLift,
    DeepLiftShap,
    FeatureAblation,
    NoiseTunnel,
    Occlusion,
    Saliency,
    ShapleyValues,
)
from torch import nn

from model_registry.registry import LoadedModel
from service.engine.attribution.input_attributions import (
    compute_input_attributions,
    plan_input_attributions,
)
from service.engine.attribution.perturbation.coalitions import Coalitions
from service.engine.attribution.perturbation.features import grid_mask
from service.engine.attribution.perturbation.references import reference
from service.engine.attribution.target_objects import ClassTarget
from service.samples import digit_samples
from tests.numerics import assert_float32_close
from tests.tiny_models import loaded, model_batch, pearson, seeded

# Captum's DeepLift says it hooks the ReLUs and sets requires_grad on its input: expected.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Setting forward, backward hooks:UserWarning"),
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require:UserWarning"),
]


class OcclusionCase(NamedTuple):
    window: int
    stride: int
    baseline: str
    batch: int


OCCLUSION_CASES = [
    OcclusionCase(8, 8, "zero", 16),
    OcclusionCase(10, 7, "black", 7),  # the last window is cut at the edge, as Captum's
    OcclusionCase(12, 5, "blur", 2),
    OcclusionCase(32, 1, "mean", 3),  # one window: the whole input
]


@pytest.fixture(scope="module")
def digit_batch(digits: LoadedModel) -> torch.Tensor:
    return model_batch(digits, list(digit_samples(2).values()))


def _second_classes(model: LoadedModel, batch: torch.Tensor) -> list[int]:
    with torch.no_grad():
        return model.module(batch).topk(2, dim=1).indices[:, 1].tolist()


def _ours(model: LoadedModel, images: torch.Tensor, method: str, target: str, **given) -> object:
    plan = plan_input_attributions(model, method=method, given=given, targets=target)
    blank = np.zeros((images.shape[0], *model.spec.input_size, 3), np.uint8)
    return compute_input_attributions(model, images, plan, inputs=blank)


@pytest.mark.parametrize(
    "case", OCCLUSION_CASES, ids=lambda c: f"{c.window}-{c.stride}-{c.baseline}"
)
def test_occlusion_equals_captum(
    case: OcclusionCase, digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    reference_module = copy.deepcopy(digits.module)
    channels = digit_batch.shape[1]
    for image, target in enumerate(_second_classes(digits, digit_batch)):
        x = digit_batch[image : image + 1]
        ours = _ours(digits, x, "occlusion", str(target), **case._asdict())
        expected = Occlusion(reference_module).attribute(
            x,
            sliding_window_shapes=(channels, case.window, case.window),
            strides=case.stride,
            baselines=reference(x, case.baseline, digits.spec),
            target=target,
            perturbations_per_eval=4,
        )
        assert ours.values.shape == (1, 1, channels, 32, 32) and ours.values.dtype == np.float32
        assert_float32_close(ours.values[:, 0], expected)


def test_occlusion_of_several_images_and_targets_of_a_colour_net(
    relu_nets: dict[str, LoadedModel],
) -> None:
    """Three channels, two images, two targets: each equals Captum's for that pair."""
    model = relu_nets["module"]
    batch = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    ours = _ours(model, batch, "occlusion", "1,3", window=9, stride=5, batch=4)
    assert ours.values.shape == (2, 2, 3, 24, 24)
    occlusion = Occlusion(copy.deepcopy(model.module))
    for slot, target in enumerate((1, 3)):
        expected = occlusion.attribute(
            batch,
            sliding_window_shapes=(3, 9, 9),
            strides=5,
            target=target,
            perturbations_per_eval=5,
        )
        assert_float32_close(ours.values[:, slot], expected)


@pytest.mark.parametrize(
    ("mask", "baseline", "batch"),
    [("grid:4", "zero", 16), ("grid:3", "mean", 5), ("slic:6", "blur", 7), ("grid:1", "black", 1)],
)
def test_feature_ablation_equals_captum_with_the_same_mask(
    mask: str, baseline: str, batch: int, digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    targets = _second_classes(digits, digit_batch)
    ours = _ours(
        digits,
        digit_batch,
        "feature-ablation",
        ",".join(map(str, targets)),
        mask=mask,
        baseline=baseline,
        batch=batch,
    )
    assert ours.values.shape == (2, 2, 1, 32, 32) and ours.mask.shape == (2, 32, 32)
    ablation = FeatureAblation(copy.deepcopy(digits.module))
    for image, target in enumerate(targets):
        x = digit_batch[image : image + 1]
        expected = ablation.attribute(
            x,
            baselines=reference(x, baseline, digits.spec),
            target=target,
            feature_mask=torch.from_numpy(ours.mask[image])[None, None],
            perturbations_per_eval=3,
        )
        assert_float32_close(ours.values[image, targets.index(target)], expected[0])


def test_grid_mask_follows_the_block_formula(
    digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    ours = _ours(digits, digit_batch[:1], "feature-ablation", "0", mask="grid:5", batch=25)
    height, width = digits.spec.input_size
    for y in range(height):
        for x in range(width):
            assert ours.mask[0, y, x] == (y * 5 // height) * 5 + (x * 5 // width)


def test_slic_mask_is_scikit_image_slic_of_the_denormalized_input(
    digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    from skimage.segmentation import slic

    ours = _ours(digits, digit_batch, "feature-ablation", "0", mask="slic:10", batch=16)
    mean, std = digits.spec.mean[0], digits.spec.std[0]
    for image in range(2):
        pixels = (digit_batch[image, 0] * std + mean).clamp(0, 1).double().numpy()
        expected = slic(
            pixels, n_segments=10, compactness=10, sigma=1, start_label=0, channel_axis=None
        )
        assert np.array_equal(ours.mask[image], expected)
        assert 2 <= len(np.unique(expected)) <= 20


@pytest.mark.parametrize(("method", "samples"), [("shapley-sampling", 30), ("kernelshap", 64)])
def test_shapley_estimates_converge_to_captum_exact_shapley_values_and_are_complete(
    method: str, samples: int, digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    """On a 2 x 2 grid (4 features, 16 coalitions) Captum's ShapleyValues is exact."""
    targets = _second_classes(digits, digit_batch)
    exact = ShapleyValues(copy.deepcopy(digits.module))
    corners = (slice(None), slice(None), slice(None, None, 16), slice(None, None, 16))
    for image, target in enumerate(targets[:1]):
        x = digit_batch[image : image + 1]
        ours = _ours(digits, x, method, str(target), mask="grid:2", samples=samples, seed=1)
        expected = exact.attribute(
            x,
            target=target,
            feature_mask=grid_mask(32, 32, 2)[None, None],
            perturbations_per_eval=4,
        )
        per_feature = ours.values[0, 0][corners[1:]].ravel()  # one pixel of each block
        assert pearson(per_feature, expected[corners].ravel()) >= 0.95
        with torch.no_grad():
            scores = digits.module(torch.cat([x, torch.zeros_like(x)]))[:, target]
        assert per_feature.sum() == pytest.approx(float(scores[0] - scores[1]), rel=1e-4, abs=1e-4)


@pytest.fixture(scope="module")
def linear() -> LoadedModel:
    """A linear model: each feature's Shapley value, and the LIME coefficient, is exactly
    the sum over its pixels of weight x (input - baseline)."""
    module = seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 3)), seed=2)
    return loaded("linear", module, (32, 32), 3, gray=True)


@pytest.mark.parametrize("method", ["shapley-sampling", "kernelshap", "lime"])
def test_sampling_methods_answer_a_linear_model_exactly(
    method: str, linear: LoadedModel, digit_batch: torch.Tensor
) -> None:
    ours = _ours(
        linear, digit_batch, method, "2", mask="grid:3", samples=40, seed=3, baseline="mean"
    )
    start = reference(digit_batch, "mean", linear.spec)
    contribution = (linear.module[1].weight[2].view(32, 32) * (digit_batch - start)[:, 0]).numpy()
    blocks = grid_mask(32, 32, 3).numpy()
    expected = np.zeros((2, 32, 32), np.float64)
    for feature in range(9):
        inside = blocks == feature
        expected[:, inside] = contribution[:, inside].sum(axis=1, keepdims=True)
    assert_float32_close(ours.values[:, 0, 0], expected)
    assert np.array_equal(ours.mask[0], blocks)


def test_occlusion_leaves_the_model_as_found(
    digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    state = {k: v.clone() for k, v in digits.module.state_dict().items()}
    _ours(digits, digit_batch, "occlusion", "1", window=16, stride=16)
    assert not digits.module._forward_hooks and digits.module.training is False
    assert all(p.grad is None for p in digits.module.parameters())
    for key, value in digits.module.state_dict().items():
        assert torch.equal(value, state[key])


def _score_gap(model: LoadedModel, x: torch.Tensor, starts: torch.Tensor, target: int) -> float:
    """f(x) - mean f(baseline) of one image."""
    with torch.no_grad():
        return float(model.module(x)[0, target] - model.module(starts)[:, target].mean())


def test_deeplift_equals_captum_on_a_net_with_separate_relu_modules(
    relu_nets: dict[str, LoadedModel],
) -> None:
    model = relu_nets["module"]
    batch = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    ours = _ours(model, batch, "deeplift", "1,4", baseline="blur")
    start = reference(batch, "blur", model.spec)
    captum = DeepLift(copy.deepcopy(model.module))
    for slot, target in enumerate((1, 4)):
        expected = captum.attribute(batch, baselines=start, target=target).detach()
        assert pearson(ours.values[:, slot], expected) >= 0.99
        assert_float32_close(ours.values[:, slot], expected)


@pytest.mark.parametrize("baseline", ["zero", "blur"])
def test_deeplift_is_complete_on_resnet18_whose_blocks_reuse_one_relu(
    baseline: str, resnet: LoadedModel, photo_images
) -> None:
    """BasicBlock calls its `relu` twice and resnet18 max-pools: the attributions still sum
    to f(x) - f(baseline), per image and target (Captum's module hooks do not)."""
    batch = model_batch(resnet, list(photo_images.values())[:1])
    ours = _ours(resnet, batch, "deeplift", "3,700", baseline=baseline)
    start = reference(batch, baseline, resnet.spec)
    for slot, target in enumerate((3, 700)):
        gap = _score_gap(resnet, batch, start, target)
        assert float(ours.values[0, slot].sum()) == pytest.approx(gap, rel=1e-3, abs=1e-5)


def test_deeplift_shap_equals_captum_over_the_same_baselines_and_is_complete(
    relu_nets: dict[str, LoadedModel],
) -> None:
    from service.engine.attribution.methods.propagation import _noised

    model = relu_nets["module"]
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    ours = _ours(model, x, "deeplift-shap", "2", samples=5, seed=9)
    starts = torch.cat(_noised(x, torch.zeros_like(x), 5, 9))
    expected = (
        DeepLiftShap(copy.deepcopy(model.module)).attribute(x, baselines=starts, target=2).detach()
    )
    assert_float32_close(ours.values[:, 0], expected)
    gap = _score_gap(model, x, starts, 2)
    assert float(ours.values.sum()) == pytest.approx(gap, rel=1e-4, abs=1e-6)
    again = _ours(model, x, "deeplift-shap", "2", samples=5, seed=9)
    assert np.array_equal(again.values, ours.values)


def test_gradient_shap_on_a_linear_model_is_weight_times_difference(
    linear: LoadedModel, digit_batch: torch.Tensor
) -> None:
    ours = _ours(linear, digit_batch, "gradient-shap", "1", samples=4, baseline="black")
    start = reference(digit_batch, "black", linear.spec)
    expected = linear.module[1].weight[1].view(1, 1, 32, 32) * (digit_batch - start)
    assert_float32_close(ours.values[:, 0], expected)
    noisy = [
        _ours(linear, digit_batch, "gradient-shap", "1", samples=3, noise=0.2, seed=s)
        for s in (1, 1, 2)
    ]
    assert np.array_equal(noisy[0].values, noisy[1].values)
    assert not np.array_equal(noisy[0].values, noisy[2].values)


@pytest.mark.parametrize("kind", ["smoothgrad_sq", "vargrad", "smoothgrad"])
def test_noise_tunnel_equals_captum_noise_tunnel_under_the_same_seed(
    kind: str, digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    x = digit_batch[:1]
    target = _second_classes(digits, x)[0]
    ours = _ours(digits, x, "vanilla", str(target), noise=kind, samples=12, noise_level=0.2, seed=7)
    torch.manual_seed(7)
    expected = NoiseTunnel(Saliency(copy.deepcopy(digits.module))).attribute(
        x.clone().requires_grad_(True),
        nt_type=kind,
        nt_samples=12,
        stdevs=float(0.2 * (x.max() - x.min())),
        target=target,
        abs=False,
    )
    assert_float32_close(ours.values[0, 0], expected.detach()[0])  # the same draws


def test_noise_tunnel_smoothgrad_around_vanilla_is_the_smoothgrad_method(
    digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    """The same draws, image after image: the tunnel and /gradients' smoothgrad agree."""
    tunnel = _ours(digits, digit_batch, "vanilla", "1,5", noise="smoothgrad", samples=6, seed=3)
    smooth = _ours(digits, digit_batch, "smoothgrad", "1,5", samples=6, noise=0.15, seed=3)
    assert_float32_close(tunnel.values, smooth.values)


def test_coalitions_run_each_distinct_row_once_and_read_the_full_image_score(
    digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    """Repeated coalitions share one pass row; the all-kept row reads `full`; the scores
    equal those of every row run on its own."""
    x = digit_batch[:1]
    position = grid_mask(*digits.spec.input_size, 2).to(torch.int64)
    target = ClassTarget(torch.tensor([[3, 5]]))
    with torch.inference_mode():
        full = target.scores(digits.module(x), torch.tensor([0]))[0].double()
    keep = torch.tensor([[1, 0, 0, 1], [1, 1, 1, 1], [1, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 1]])
    rows: list[int] = []
    handle = digits.module.register_forward_pre_hook(lambda _m, args: rows.append(len(args[0])))
    try:
        game = Coalitions(digits.module, x, torch.zeros_like(x), position, 4, target, 0, 16)
        shared = game.scores(keep)
        assert rows == [3] and game.done == 5  # three distinct rows of five
        game.full = full
        with_full = game.scores(keep)
        assert rows == [3, 2]  # the all-kept row read from `full`
        one_by_one = torch.cat(
            [
                Coalitions(digits.module, x, torch.zeros_like(x), position, 4, target, 0, 1).scores(
                    row[None]
                )
                for row in keep
            ]
        )
    finally:
        handle.remove()
    assert shared.shape == (5, 2) and shared.dtype == torch.float64
    assert_float32_close(shared, one_by_one)
    assert_float32_close(with_full, one_by_one)
    assert torch.equal(shared[0], shared[2]) and torch.equal(shared[0], shared[4])
