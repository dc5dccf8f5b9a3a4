"""Gradient maps against Captum (and pytorch-grad-cam's guided recipes), targets not top-1."""

from __future__ import annotations

import copy
import threading
from typing import NamedTuple

import numpy as np
import pytest
import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from PIL import Image
from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from model_registry.registry import LoadedModel
from service.engine.attribution.baselines import baseline
from service.engine.attribution.explain import compute_gradients
from service.engine.attribution.gradients import input_gradients
from service.engine.attribution.guided import relu_override
from service.engine.attribution.maps import gradient_maps
from service.engine.attribution.plan import plan_gradients
from service.samples import digit_samples
from tests.tiny_models import model_batch, pearson

pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")


class CaptumCase(NamedTuple):
    method: str
    attribute: object  # (reference module, inputs, targets) -> attributions
    options: dict
    min_r: float


def _ig(kind: str, steps: int = 50):
    def run(module, x, targets, spec):
        start = baseline(x.detach(), kind, spec)
        return IntegratedGradients(module).attribute(
            x, baselines=start, target=targets, n_steps=steps
        )

    return run


CASES = [
    CaptumCase(
        "vanilla", lambda m, x, t, s: Saliency(m).attribute(x, target=t, abs=False), {}, 0.99
    ),
    CaptumCase(
        "guided-backprop", lambda m, x, t, s: GuidedBackprop(m).attribute(x, target=t), {}, 0.99
    ),
    CaptumCase("deconvnet", lambda m, x, t, s: Deconvolution(m).attribute(x, target=t), {}, 0.99),
    CaptumCase(
        "input-x-gradient", lambda m, x, t, s: InputXGradient(m).attribute(x, target=t), {}, 0.99
    ),
    # Captum's default: 50 Gauss-Legendre points; ours: 32 (the bar is r >= 0.95).
    CaptumCase("integrated-gradients", _ig("zero"), {"steps": 32}, 0.95),
    CaptumCase("integrated-gradients", _ig("black", 16), {"steps": 16, "baseline": "black"}, 0.99),
    CaptumCase("integrated-gradients", _ig("blur", 16), {"steps": 16, "baseline": "blur"}, 0.99),
    CaptumCase(
        "guided-gradcam",
        lambda m, x, t, s: GuidedGradCam(m, m.relu2).attribute(x, target=t),
        {"layer": "relu2"},
        0.99,
    ),
]


@pytest.fixture(scope="module")
def digit_batch(digits: LoadedModel) -> torch.Tensor:
    return model_batch(digits, list(digit_samples(4).values()))


def _second_classes(model: LoadedModel, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.module(batch).topk(2, dim=1).indices[:, 1]


def _reference_module(model: LoadedModel) -> torch.nn.Module:
    module = copy.deepcopy(model.module)
    for param in module.parameters():
        param.requires_grad_(True)
    return module


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.method}-{c.options.get('baseline', '')}" for c in CASES]
)
def test_gradient_methods_match_captum(
    case: CaptumCase, digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    targets = _second_classes(digits, digit_batch)
    x = digit_batch.clone().requires_grad_(True)
    expected = case.attribute(_reference_module(digits), x, targets, digits.spec).detach().numpy()
    for image, target in enumerate(targets.tolist()):
        plan = plan_gradients(digits, method=case.method, targets=str(target), **case.options)
        ours = compute_gradients(
            digits, digit_batch[image : image + 1], plan, inputs=np.zeros((1, 32, 32, 3), np.uint8)
        )
        assert ours.values.shape == (1, 1, 1, 32, 32) and ours.values.dtype == np.float32
        assert pearson(ours.values[0, 0], expected[image]) >= case.min_r


def test_smoothgrad_matches_captum_noise_tunnel_draw_for_draw(
    digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    targets = _second_classes(digits, digit_batch)
    reference = NoiseTunnel(Saliency(_reference_module(digits)))
    for image, target in enumerate(targets.tolist()):
        x = digit_batch[image : image + 1]
        plan = plan_gradients(
            digits, method="smoothgrad", targets=str(target), samples=24, noise=0.2, seed=5
        )
        ours = compute_gradients(digits, x, plan, inputs=np.zeros((1, 32, 32, 3), np.uint8)).values[
            0, 0
        ]
        sigma = float(0.2 * (x.max() - x.min()))
        torch.manual_seed(5)
        expected = reference.attribute(
            x.clone().requires_grad_(True),
            nt_type="smoothgrad",
            nt_samples=24,
            stdevs=sigma,
            target=target,
            abs=False,
        )
        assert pearson(ours, expected.detach().numpy()[0]) >= 0.99


def test_guided_backprop_matches_pytorch_grad_cam_on_resnet_inplace_relus(
    resnet: LoadedModel, photo: Image.Image
) -> None:
    """torchvision's ResNet reuses one in-place ReLU per block; the override covers every call."""
    batch = model_batch(resnet, [photo])
    target = int(resnet.module(batch).topk(2).indices[0, 1])
    plan = plan_gradients(resnet, method="guided-backprop", targets=str(target))
    ours = compute_gradients(resnet, batch, plan, inputs=np.zeros((1, 64, 64, 3), np.uint8)).values[
        0, 0
    ]
    expected = GuidedBackpropReLUModel(_reference_module(resnet), device="cpu")(
        batch.clone(), target_category=target
    )
    assert pearson(ours, expected.transpose(2, 0, 1)) >= 0.99


def test_guided_gradcam_is_guided_backprop_times_scaled_gradcam(
    resnet: LoadedModel, photo: Image.Image
) -> None:
    """The recipe of pytorch-grad-cam's example: guided backprop x the [0, 1] Grad-CAM mask."""
    batch = model_batch(resnet, [photo])
    target = int(resnet.module(batch).topk(2).indices[0, 1])
    plan = plan_gradients(
        resnet, method="guided-gradcam", targets=str(target), layer="layer3", upsample="bilinear"
    )
    ours = compute_gradients(resnet, batch, plan, inputs=np.zeros((1, 64, 64, 3), np.uint8)).values[
        0, 0
    ]
    module = _reference_module(resnet)
    with GradCAM(model=module, target_layers=[module.layer3]) as cam:
        mask = cam(input_tensor=batch.clone(), targets=[ClassifierOutputTarget(target)])[0]
    guided = GuidedBackpropReLUModel(module, device="cpu")(batch.clone(), target_category=target)
    assert pearson(ours, (guided * mask[:, :, None]).transpose(2, 0, 1)) >= 0.99


@pytest.mark.parametrize("method", ["guided-backprop", "deconvnet"])
def test_functional_and_inplace_relus_are_overridden_like_modules(
    method: str, relu_nets: dict[str, LoadedModel]
) -> None:
    """Same weights, ReLUs as modules (one in place) or as F.relu / Tensor.relu_ / torch.relu."""
    batch = torch.randn(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    results = {}
    for style, model in relu_nets.items():
        plan = plan_gradients(model, method=method, targets="1,3")
        results[style] = compute_gradients(
            model, batch, plan, inputs=np.zeros((3, 24, 24, 3), np.uint8)
        ).values
    np.testing.assert_allclose(results["functional"], results["module"], rtol=1e-5, atol=1e-7)
    reference = (GuidedBackprop if method == "guided-backprop" else Deconvolution)(
        _reference_module(relu_nets["module"])
    )
    for slot, target in enumerate((1, 3)):
        expected = (
            reference.attribute(batch.clone().requires_grad_(True), target=target).detach().numpy()
        )
        assert pearson(results["functional"][:, slot], expected) >= 0.99
    vanilla = compute_gradients(
        relu_nets["functional"],
        batch,
        plan_gradients(relu_nets["functional"], method="vanilla", targets="1,3"),
        inputs=np.zeros((3, 24, 24, 3), np.uint8),
    ).values
    assert not np.allclose(vanilla, results["functional"])


def test_relu_override_stays_in_its_thread(relu_nets: dict[str, LoadedModel]) -> None:
    """While one thread runs with the guided override, another thread's gradients are plain."""
    module = relu_nets["functional"].module
    batch = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 2])
    plain = input_gradients(module, batch, targets)
    inside, outside = threading.Event(), threading.Event()
    seen: dict[str, torch.Tensor] = {}

    def guided_thread() -> None:
        with relu_override("guided"):
            inside.set()
            outside.wait(timeout=30)
            seen["guided"] = input_gradients(module, batch, targets, relu_mode=None)

    worker = threading.Thread(target=guided_thread)
    worker.start()
    inside.wait(timeout=30)
    seen["other"] = input_gradients(module, batch, targets)
    outside.set()
    worker.join(timeout=30)
    torch.testing.assert_close(seen["other"], plain)
    guided = input_gradients(module, batch, targets, relu_mode="guided")
    torch.testing.assert_close(seen["guided"], guided)
    assert not torch.allclose(guided, plain)
    assert not torch._C._is_torch_function_mode_enabled()


@pytest.mark.parametrize(
    "method", ["vanilla", "guided-backprop", "integrated-gradients", "smoothgrad"]
)
def test_several_targets_equal_single_runs(
    method: str, digits: LoadedModel, digit_batch: torch.Tensor
) -> None:
    options = (
        {"steps": 8}
        if method == "integrated-gradients"
        else {"samples": 6}
        if method == "smoothgrad"
        else {}
    )
    plan = plan_gradients(digits, method=method, targets="2,7", **options)
    _, targets, both = gradient_maps(digits, digit_batch, plan)
    assert both.shape == (4, 2, 1, 32, 32) and targets.classes.tolist() == [[2, 7]] * 4
    for slot, target in enumerate((2, 7)):
        single = gradient_maps(
            digits,
            digit_batch,
            plan_gradients(digits, method=method, targets=str(target), **options),
        )[2]
        torch.testing.assert_close(both[:, slot], single[:, 0], rtol=1e-4, atol=1e-6)
