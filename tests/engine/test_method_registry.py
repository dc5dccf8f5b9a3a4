"""The attribution method registry: one class per method, listed by the API and the portal."""

from __future__ import annotations

import pytest
import torch

from model_registry.errors import InvalidInput
from service.engine.attribution.methods.registry import (
    CamInputs,
    CamMethod,
    cam_method,
    cam_methods,
    gradient_method,
    gradient_methods,
    register,
)
from tests.routes.test_attributions import CAM_METHODS, TRANSFORMER_CAMS
from tests.routes.test_attributions import GRADIENT_METHODS as GRADIENTS
from tests.routes.test_input_attributions_api import (
    INPUT_METHODS_WITH_GRADIENTS,
    INPUT_ONLY_METHODS,
)

CAMS = [*CAM_METHODS, *TRANSFORMER_CAMS]
NEED_GRADIENTS = {
    "legrad",
    "gradcam",
    "finercam",
    "shapleycam",
    "gradcam++",
    "smoothgradcam++",
    "xgradcam",
    "layercam",
    "gradcam-elementwise",
    "hirescam",
    "eigengradcam",
    "fullgrad",
    *GRADIENTS,
}


def test_every_method_is_registered_once_in_listing_order() -> None:
    assert [m.name for m in cam_methods()] == CAMS
    assert [m.name for m in gradient_methods()] == GRADIENTS
    for method in [*cam_methods(), *gradient_methods()]:
        assert method.needs_gradients == (method.name in NEED_GRADIENTS), method.name
        assert method.summary


def test_an_unknown_method_names_the_choices() -> None:
    with pytest.raises(InvalidInput) as caught:
        cam_method("gradcam+")
    assert caught.value.field == "method" and caught.value.extra["choices"] == CAMS
    with pytest.raises(InvalidInput) as caught:
        gradient_method("saliency")
    assert caught.value.extra["choices"] == GRADIENTS


def test_a_name_cannot_be_registered_twice() -> None:
    class Again(CamMethod):
        name = "gradcam"
        summary = "a second gradcam"

        def compute(self, inputs: CamInputs) -> torch.Tensor:
            return inputs.activations

    with pytest.raises(ValueError, match="registered twice"):
        register(Again)
    assert cam_method("gradcam").summary.startswith("Grad-CAM:")


def test_api_lists_the_registry(default_client) -> None:
    body = default_client.get("/v1/methods").json()
    assert body["count"] == len(CAMS) + len(GRADIENTS) + len(INPUT_ONLY_METHODS)
    assert [m["name"] for m in body["data"] if m["kind"] == "cam"] == CAMS
    assert [m["name"] for m in body["data"] if m["kind"] == "gradients"] == GRADIENTS
    needing = {m["name"] for m in body["data"] if m["needs_gradients"]}
    assert needing == NEED_GRADIENTS | INPUT_METHODS_WITH_GRADIENTS
    schema = default_client.get("/openapi.json").json()
    enums = schema["components"]["schemas"]
    assert enums["CamMethod"]["enum"] == CAMS and enums["GradientMethod"]["enum"] == GRADIENTS
