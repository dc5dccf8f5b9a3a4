"""A request's plan is checked on the event loop's thread, and only the device thread may call
torch's kernels: a second calling thread gets an OpenMP team of its own, and after that every
pass of the device thread ran slower (a fullgrad plan's batch-norm sqrt made resnet18's
/predict 27 -> 37 ms for the rest of the process). So planning any method on any model
computes no tensor."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.input_attributions import plan_input_attributions
from service.engine.attribution.methods.registry import cam_methods, input_methods
from service.engine.attribution.plan import plan_cam


class _Computed(TorchFunctionMode):
    """The torch functions called that gave a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.calls.append(getattr(func, "__qualname__", repr(func)))
        return out


def _computed(plan) -> list[str]:  # noqa: ANN001
    seen = _Computed()
    try:
        with seen:
            plan()
    except InvalidInput:
        pass  # a method that does not apply to the model: refused, still without a tensor
    return seen.calls


@pytest.mark.parametrize("model_name", ["digits", "resnet"])
def test_no_method_computes_a_tensor_while_planned(
    model_name: str, request: pytest.FixtureRequest
) -> None:
    model: LoadedModel = request.getfixturevalue(model_name)
    computed = {}
    for method in cam_methods():
        calls = _computed(lambda m=method: plan_cam(model, method=m.name, layers=[]))
        computed.update({f"cam {method.name}": calls} if calls else {})
    for method in input_methods():
        calls = _computed(
            lambda m=method: plan_input_attributions(model, method=m.name, given={}, targets=None)
        )
        computed.update({f"attributions {method.name}": calls} if calls else {})
    assert computed == {}
    assert len(cam_methods()) >= 20 and len(input_methods()) >= 10  # every method was planned
