"""SS-CAM, IS-CAM and SmoothGrad-CAM++ against torchcam itself (issue 27), on the trained
digits model (64 channels at relu2: cheap to perturb) and a seeded resnet18 at 64 px.

The random methods draw their noise as torchcam does (see `methods/smoothed_cams`): the
service's generator seeded with `seed` gives the tensors torchcam draws after
`torch.manual_seed(seed)`, so the maps agree under the same seed.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchcam.methods import ISCAM, SSCAM, SmoothGradCAMpp

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam
from service.engine.attribution.methods.registry import cam_method
from service.engine.attribution.plan import plan_cam
from service.samples import digit_samples
from tests.tiny_models import model_batch, pearson, second_class


def ours(
    model: LoadedModel, batch: torch.Tensor, method: str, layer: str, target: int, **options: object
) -> np.ndarray:
    """layerscope's maps [B, H, W] for one class, min-max scaled."""
    plan = plan_cam(
        model, method=method, layers=[layer], targets=str(target), normalize=True, **options
    )
    blank = np.zeros((len(batch), *model.spec.input_size, 3), np.uint8)
    return compute_cam(model, batch, plan, inputs=blank).layers[0].maps[:, 0]


def torchcam_maps(
    cls: type,
    model: LoadedModel,
    batch: torch.Tensor,
    layer: str,
    target: int,
    seed: int,
    **kw: object,
) -> np.ndarray:
    """torchcam's maps at the layer's resolution, upsampled to the input as ours are (ReLU
    and min-max scaling commute with the correlation)."""
    module = model.module
    with cls(module, target_layer=layer, input_shape=tuple(batch.shape[1:]), **kw) as cam:
        module(batch.clone())
        torch.manual_seed(seed)
        (maps,) = cam(class_idx=[target] * len(batch))
    size = batch.shape[-2:]
    return F.interpolate(maps[:, None].detach(), size=size, mode="bilinear")[:, 0].numpy()


class Case(NamedTuple):
    method: str
    cls: type
    options: dict[str, float]
    torchcam: dict[str, float]
    images: int  # two: each sample's noise is one draw for the whole batch


DIGIT_CASES = [
    Case("sscam", SSCAM, {"samples": 2, "noise": 2.0}, {"num_samples": 2, "std": 2.0}, 2),
    Case("sscam", SSCAM, {"samples": 2, "noise": 0.5}, {"num_samples": 2, "std": 0.5}, 1),
    Case("iscam", ISCAM, {"samples": 3}, {"num_samples": 3}, 1),
]


@pytest.fixture(scope="module")
def digit(digits: LoadedModel) -> torch.Tensor:
    return model_batch(digits, list(digit_samples(2, start=3).values()))


@pytest.mark.parametrize("case", DIGIT_CASES, ids=[f"{c.method}-{c.options}" for c in DIGIT_CASES])
def test_score_cam_family_matches_torchcam(
    case: Case, digits: LoadedModel, digit: torch.Tensor
) -> None:
    batch = digit[: case.images]
    target = second_class(digits, batch)
    seeded = {"seed": 7} if "noise" in case.options else {}
    maps = ours(digits, batch, case.method, "relu2", target, **case.options, **seeded)
    expected = torchcam_maps(case.cls, digits, batch, "relu2", target, 7, **case.torchcam)
    assert maps.shape == expected.shape and maps.dtype == np.float32
    for image in range(case.images):
        assert maps[image].max() > 0
        assert pearson(maps[image], expected[image]) >= 0.99


def test_smoothgradcam_plus_plus_matches_torchcam(digits: LoadedModel, digit: torch.Tensor) -> None:
    """Two images: each sample's noise is one draw for the whole batch, as torchcam's."""
    target = second_class(digits, digit)
    options = {"samples": 3, "noise": 0.3, "seed": 11}
    maps = ours(digits, digit, "smoothgradcam++", "relu2", target, **options)
    expected = torchcam_maps(
        SmoothGradCAMpp, digits, digit, "relu2", target, 11, num_samples=3, std=0.3
    )
    for image in range(2):
        assert maps[image].max() > 0
        assert pearson(maps[image], expected[image]) >= 0.99
    again = ours(digits, digit, "smoothgradcam++", "relu2", target, **options)
    np.testing.assert_array_equal(maps, again)  # the same seed, the same answer
    other = ours(digits, digit, "smoothgradcam++", "relu2", target, **{**options, "seed": 12})
    assert not np.array_equal(maps, other)


@pytest.mark.parametrize(
    ("method", "cls", "names"),
    [
        ("sscam", SSCAM, {"default_samples": "num_samples", "default_noise": "std"}),
        ("iscam", ISCAM, {"default_samples": "num_samples"}),
        (
            "smoothgradcam++",
            SmoothGradCAMpp,
            {"default_samples": "num_samples", "default_noise": "std"},
        ),
    ],
)
def test_defaults_are_torchcams(method: str, cls: type, names: dict[str, str]) -> None:
    """No samples or noise: torchcam's own defaults."""
    chosen = cam_method(method)
    signature = inspect.signature(cls).parameters
    for ours_name, theirs in names.items():
        assert getattr(chosen, ours_name) == signature[theirs].default


@pytest.mark.parametrize(
    ("method", "options", "field"),
    [
        ("gradcam", {"samples": 4}, "samples"),
        ("scorecam", {"seed": 1}, "seed"),
        ("iscam", {"noise": 0.5}, "noise"),
        ("sscam", {"samples": 65}, "samples"),
        ("smoothgradcam++", {"noise": 0.0}, "noise"),
    ],
)
def test_sampling_parameters_are_checked(
    digits: LoadedModel, method: str, options: dict[str, float], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_cam(digits, method=method, layers=["relu2"], **options)
    assert caught.value.field == field and field in str(caught.value)
