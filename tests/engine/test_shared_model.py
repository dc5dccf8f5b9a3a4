"""The shared model is left exactly as found: no hooks, no .grad, same flags and weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam, compute_gradients
from service.engine.attribution.plan import plan_cam, plan_gradients
from tests.routes.test_attributions import CAM_METHODS, FAST, GRADIENT_METHODS, post


def snapshot(module: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "training": {name: sub.training for name, sub in module.named_modules()},
        "requires_grad": {name: p.requires_grad for name, p in module.named_parameters()},
    }


def assert_untouched(module: nn.Module, before: dict) -> None:
    for name, sub in module.named_modules():
        for attribute in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_forward_hooks_with_kwargs",
            "_forward_pre_hooks_with_kwargs",
        ):
            assert not getattr(sub, attribute), f"{name or 'model'}.{attribute} is not empty"
    for name, param in module.named_parameters():
        assert param.grad is None, f"{name}.grad was written"
    assert {name: p.requires_grad for name, p in module.named_parameters()} == before[
        "requires_grad"
    ]
    assert {name: sub.training for name, sub in module.named_modules()} == before["training"]
    after = module.state_dict()
    assert after.keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after[key], value), f"{key} changed"
    assert not torch._C._is_torch_function_mode_enabled()
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def _fails_cleanly(model: LoadedModel, layer: str, hook: Callable, run: Callable) -> None:
    """`run()` raises Boom from `hook` on `layer`, and leaves the model exactly as found."""
    before = snapshot(model.module)
    handle = model.module.get_submodule(layer).register_forward_hook(hook)
    try:
        with pytest.raises(Boom):
            run()
    finally:
        handle.remove()
    assert_untouched(model.module, before)


def test_api_requests_leave_the_served_model_untouched(app_client, digit_pngs: list[bytes]) -> None:
    model: LoadedModel = app_client.app.state.registry.get("digits")
    before = snapshot(model.module)
    for method in CAM_METHODS:
        response = post(
            app_client,
            f"/v1/models/digits/cam?method={method}&format=json&target=1,2{FAST.get(method, '')}",
            digit_pngs[:2],
        )
        assert response.status_code == 200
    query = "format=json&metrics=deletion,insertion&randomize=2&metric_steps=4"
    assert post(app_client, f"/v1/models/digits/cam?{query}", digit_pngs[:1]).status_code == 200
    for method in GRADIENT_METHODS:
        url = f"/v1/models/digits/gradients?method={method}&format=json&randomize=1"
        assert post(app_client, url + FAST.get(method, ""), digit_pngs[:2]).status_code == 200
    for url in (
        "/v1/models/digits/cam?target=10",
        "/v1/models/digits/cam?layer=fc",
        "/v1/models/digits/gradients?alpha=nan",
    ):
        assert post(app_client, url, digit_pngs[:1]).status_code == 422
    assert post(app_client, "/v1/models/digits/cam", [b"\x89PNG\r\n\x1a\n broken"]).status_code in (
        415,
        422,
    )
    assert_untouched(model.module, before)

    def worker_state() -> tuple[bool, bool, bool]:
        return (
            torch._C._is_torch_function_mode_enabled(),
            torch.is_grad_enabled(),
            torch.is_inference_mode_enabled(),
        )

    pool = app_client.app.state.pool
    for _ in range(4):  # every worker thread is back to plain grad mode, no override left
        assert app_client.portal.call(pool.run, worker_state) == (False, True, False)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam", "eigencam"])
def test_failure_in_the_middle_of_a_pass_leaves_no_trace(method: str, resnet: LoadedModel) -> None:
    batch = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    plan = plan_cam(resnet, method=method, layers=["layer3"], targets="1")
    calls = {"n": 0}

    def explode(_module, _inputs, _output):
        calls["n"] += 1
        if calls["n"] >= (2 if method in ("scorecam", "ablationcam") else 1):
            raise Boom("fc failed")

    inputs = np.zeros((1, 64, 64, 3), np.uint8)
    _fails_cleanly(resnet, "fc", explode, lambda: compute_cam(resnet, batch, plan, inputs=inputs))


@pytest.mark.parametrize(
    "method", ["guided-backprop", "deconvnet", "integrated-gradients", "guided-gradcam"]
)
def test_failure_inside_a_gradient_pass_leaves_no_trace(method: str, resnet: LoadedModel) -> None:
    batch = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    plan = plan_gradients(resnet, method=method, targets="1,2", steps=4)

    def explode(_module, _inputs, output):
        if torch.is_grad_enabled() and output.requires_grad:
            raise Boom("layer2 failed")

    inputs = np.zeros((2, 64, 64, 3), np.uint8)
    run = lambda: compute_gradients(resnet, batch, plan, inputs=inputs)  # noqa: E731
    _fails_cleanly(resnet, "layer2", explode, run)
