"""unit= as the target: equal to Captum's neuron methods, and every method answers or says why."""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
import pytest
import torch
from captum.attr import NeuronGradient, NeuronGuidedBackprop, NeuronIntegratedGradients

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam, compute_gradients
from service.engine.attribution.input_attributions import (
    compute_input_attributions,
    plan_input_attributions,
)
from service.engine.attribution.methods.registry import cam_methods, input_methods
from service.engine.attribution.plan import plan_cam, plan_gradients
from service.engine.attribution.unit_target import NO_UNIT, parse_unit, unit_as_output
from service.samples import digit_samples
from tests.helpers import seeded_resnet
from tests.numerics import assert_float32_close
from tests.tiny_models import loaded, model_batch

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class Case(NamedTuple):
    unit: str
    selector: object  # Captum's neuron_selector for the same unit


CAPTUM = {
    "vanilla": lambda m, layer, x, sel: NeuronGradient(m, layer).attribute(x, sel),
    "integrated-gradients": lambda m, layer, x, sel: NeuronIntegratedGradients(m, layer).attribute(
        x, sel, n_steps=8, method="gausslegendre"
    ),
    "guided-backprop": lambda m, layer, x, sel: NeuronGuidedBackprop(m, layer).attribute(x, sel),
}
RESNET_CASES = [
    Case("layer3:5", lambda out: out[:, 5].mean(dim=(1, 2))),
    Case("layer2.1.conv1:7@1,2", (7, 1, 2)),
    Case("layer3.1.relu:3@1,0", (3, 1, 0)),  # a ReLU that runs twice: its last call
]


@pytest.fixture(scope="module")
def small_resnet() -> LoadedModel:
    return loaded("resnet", seeded_resnet(), (32, 32), 10)


def _inputs(batch: torch.Tensor) -> np.ndarray:
    return np.zeros((batch.shape[0], *batch.shape[2:], 3), np.uint8)


def _check(model: LoadedModel, batch: torch.Tensor, case: Case, method: str) -> None:
    plan = plan_gradients(model, method=method, unit=case.unit, steps=8)
    result = compute_gradients(model, batch, plan, inputs=_inputs(batch))
    layer = model.module.get_submodule(case.unit.split(":")[0])
    theirs = CAPTUM[method](model.module, layer, batch, case.selector).detach()
    assert_float32_close(result.values[:, 0], theirs)
    assert result.unit == case.unit and result.predictions == [[]] * batch.shape[0]
    assert not model.module._forward_hooks and not model.module._forward_pre_hooks
    assert not layer._forward_hooks
    assert all(p.grad is None for p in model.module.parameters())


@pytest.mark.parametrize("method", list(CAPTUM))
@pytest.mark.parametrize("case", RESNET_CASES, ids=lambda c: c.unit)
def test_resnet_units_equal_captum_neuron_methods(small_resnet, case: Case, method: str) -> None:
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    _check(small_resnet, batch, case, method)


@pytest.mark.parametrize("method", list(CAPTUM))
def test_digit_units_equal_captum_neuron_methods(digits: LoadedModel, method: str) -> None:
    batch = model_batch(digits, list(digit_samples(2).values()))
    _check(digits, batch, Case("relu3:17", lambda out: out[:, 17].mean(dim=(1, 2))), method)
    _check(digits, batch, Case("relu2:9@4,5", (9, 4, 5)), method)


def test_gradcam_of_its_own_layer_reads_the_unit_channel(digits: LoadedModel) -> None:
    """Grad-CAM of the unit's own layer: d(mean of channel K)/d(maps) is 1/(h w) on channel
    K only, so the map is ReLU(A_K) / (h w) upsampled: the unit's channel itself."""
    batch = model_batch(digits, list(digit_samples(1).values()))
    plan = plan_cam(digits, method="gradcam", layers=[], unit="relu2:9")
    assert plan.layers == ("relu2",)
    result = compute_cam(digits, batch, plan, inputs=_inputs(batch))
    with torch.no_grad():
        maps = {}
        handle = digits.module.relu2.register_forward_hook(lambda m, i, o: maps.update(a=o))
        try:
            digits.module(batch)
        finally:
            handle.remove()
    expected = torch.nn.functional.interpolate(
        maps["a"][:, 9:10].clamp(min=0) / 256, size=(32, 32), mode="bilinear"
    )
    assert_float32_close(result.layers[0].maps[:, 0], expected[:, 0])


def _methods() -> list[tuple[str, str]]:
    return [("cam", m.name) for m in cam_methods()] + [("input", m.name) for m in input_methods()]


@pytest.mark.parametrize(("kind", "method"), _methods(), ids=lambda v: str(v))
def test_every_method_explains_a_unit_or_says_why(digits: LoadedModel, kind: str, method: str):
    batch = model_batch(digits, list(digit_samples(1).values()))
    try:
        if kind == "cam":
            chosen = next(m for m in cam_methods() if m.name == method)
            layers = ["relu2"] if chosen.uses_layer else []
            samples = 2 if "samples" in chosen.parameters else None  # sscam, iscam: seconds
            plan = plan_cam(digits, method=method, layers=layers, unit="relu3:5", samples=samples)
            values = compute_cam(digits, batch, plan, inputs=_inputs(batch)).layers[0].maps
        else:
            given = {"samples": 8} if method in ("kernelshap", "lime", "shapley-sampling") else {}
            plan = plan_input_attributions(digits, method=method, given=given, unit="relu3:5")
            values = compute_input_attributions(digits, batch, plan, inputs=_inputs(batch)).values
    except InvalidInput as refused:
        # A reasoned refusal: why this method cannot explain a unit (or this model).
        assert method in NO_UNIT or method in ("rollout", "legrad"), refused.detail
        assert refused.field in ("unit", "method") and len(refused.detail) > 40
        return
    assert method not in NO_UNIT
    assert np.isfinite(values).all() and values.shape[:2] == (1, 1)
    assert not digits.module._forward_hooks and not digits.module._forward_pre_hooks


@pytest.mark.parametrize(
    ("unit", "extra", "field", "valid_range"),
    [
        ("relu3:128", {}, "unit", [0, 127]),
        ("relu3:5@8,0", {}, "unit", [[0, 7], [0, 7]]),
        ("relu3:5", {"targets": "3"}, "unit", None),
        ("relu3", {}, "unit", None),
        ("relu2:5", {"layers": ["relu3"]}, "layer", None),
        ("relu3:5", {"metrics": ["deletion"]}, "metrics", None),
        ("relu3:5", {"method": "fullgrad", "layers": []}, "unit", None),
    ],
)
def test_bad_units_name_the_field_and_range(digits, unit, extra, field, valid_range) -> None:
    options = {"method": "gradcam", "layers": [], **extra}
    with pytest.raises(InvalidInput) as raised:
        plan_cam(digits, unit=unit, **options)
    assert raised.value.field == field, raised.value.detail
    if valid_range is not None:
        assert raised.value.extra["valid_range"] == valid_range


def test_a_vit_token_unit_equals_captum(tiny_vit: LoadedModel) -> None:
    """unit=L:K@y,x on a ViT block is patch token 1 + y * w + x (after the class token)."""
    layer = "encoder.layers.encoder_layer_0"
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    module = tiny_vit.module.get_submodule(layer)
    cases = [
        (f"{layer}:7@2,1", (1 + 2 * 4 + 1, 7)),
        (f"{layer}:7", lambda out: out[:, 1:, 7].mean(dim=1)),
    ]
    for unit, selector in cases:
        plan = plan_gradients(tiny_vit, method="vanilla", unit=unit)
        ours = compute_gradients(tiny_vit, batch, plan, inputs=_inputs(batch)).values[:, 0]
        theirs = NeuronGradient(tiny_vit.module, module).attribute(batch, selector)
        assert_float32_close(ours, theirs.detach())


def test_unit_as_output_is_this_threads_and_unhooks_after_an_error(digits: LoadedModel) -> None:
    """Inside, this thread's forward passes end at the unit's layer and another thread's
    do not; the hooks are gone afterwards, also when the body raised."""
    request = parse_unit(digits, "relu3:5")
    batch = model_batch(digits, list(digit_samples(2).values()))
    others: list[torch.Size] = []
    failing = pytest.raises(RuntimeError, match="body failed")
    with failing, torch.no_grad(), unit_as_output(digits.module, request):
        assert digits.module(batch).shape == (2, 128, 8, 8)
        elsewhere = threading.Thread(target=lambda: others.append(digits.module(batch).shape))
        elsewhere.start()
        elsewhere.join()
        raise RuntimeError("body failed")
    assert others == [torch.Size([2, 10])]
    for module in digits.module.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    with torch.no_grad():
        assert digits.module(batch).shape == (2, 10)
