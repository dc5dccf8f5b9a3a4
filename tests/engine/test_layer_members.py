"""One tensor of a layer's dict or tuple output (`backbone.fpn:0`) as a layer of its own:
maps and CAMs of it, against forward hooks, the module that computes that tensor, and
pytorch-grad-cam with a reshape_transform that picks the member."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import EigenCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

from service.engine.attribution.explain import compute_cam
from service.engine.attribution.plan import plan_cam
from service.engine.capture import capture, hooked
from tests.tiny_models import model_batch, pearson

MEMBER = "backbone.fpn:0"  # torchvision's FPN returns {"0", "1", "pool"}; "0" is ...
SAME = "backbone.fpn.layer_blocks.0"  # ... this module's output, unchanged


@pytest.fixture(scope="module")
def det_batch(dense_models, photo_images: dict[str, Image.Image]) -> torch.Tensor:
    return model_batch(dense_models["det"], [photo_images["china.jpg"]])


def test_the_catalog_lists_members_with_their_shapes(dense_models) -> None:
    catalog = dense_models["det"].catalog
    member = catalog.get(MEMBER)
    assert member.output_shape == catalog.get(SAME).output_shape
    assert (member.module_name, member.member, member.spatial) == ("backbone.fpn", "0", True)
    assert catalog.get("backbone.fpn:pool").output_shape[0] == 256


def test_capture_of_a_member_is_that_tensor(dense_models, det_batch: torch.Tensor) -> None:
    model = dense_models["det"]
    seen: list[torch.Tensor] = []
    hooks = {"backbone.fpn": lambda _m, _i, out: seen.append(out["pool"])}
    with hooked(model.module, hooks), torch.inference_mode():
        model.module(det_batch)
    outputs = capture(model.module, det_batch, {"backbone.fpn:pool": 1})
    torch.testing.assert_close(outputs["backbone.fpn:pool"], seen[0])
    assert not any(m._forward_hooks for m in model.module.modules())


@pytest.mark.parametrize("method", ["gradcam", "eigencam"])
def test_cam_of_a_member_equals_the_module_computing_it(
    dense_models, det_batch: torch.Tensor, method: str
) -> None:
    model = dense_models["det"]
    inputs = np.zeros((1, 160, 160, 3), np.uint8)
    ours = compute_cam(
        model,
        det_batch,
        plan_cam(model, method=method, layers=[MEMBER], detection="0"),
        inputs=inputs,
    )
    same = compute_cam(
        model,
        det_batch,
        plan_cam(model, method=method, layers=[SAME], detection="0"),
        inputs=inputs,
    )
    assert float(np.abs(ours.layers[0].maps).max()) > 0
    np.testing.assert_allclose(ours.layers[0].maps, same.layers[0].maps, rtol=1e-4, atol=1e-6)


def test_eigencam_of_a_member_equals_pytorch_grad_cam(dense_models, det_batch) -> None:
    """pytorch-grad-cam hooks `backbone.fpn` and picks the member in reshape_transform (its
    gradient hooks need a tensor, so only the gradient-free EigenCAM runs this way)."""
    model = dense_models["det"]
    with torch.inference_mode():
        found = model.module(det_batch)[0]
    plan = plan_cam(model, method="eigencam", layers=[MEMBER], detection="0")
    ours = compute_cam(model, det_batch, plan, inputs=np.zeros((1, 160, 160, 3), np.uint8))
    reference = copy.deepcopy(model.module)
    target = FasterRCNNBoxScoreTarget(
        labels=[int(found["labels"][0])], bounding_boxes=[found["boxes"][0].numpy()]
    )
    with EigenCAM(
        model=reference,
        target_layers=[reference.backbone.fpn],
        reshape_transform=lambda output: output["0"],
    ) as cam:
        theirs = cam(input_tensor=det_batch.clone(), targets=[target])
    r = pearson(ours.layers[0].maps[0, 0], theirs[0])
    assert r >= 0.99, r
