"""Region and box targets against pytorch-grad-cam (SemanticSegmentationTarget,
FasterRCNNBoxScoreTarget) and Captum, on seeded torchvision models and real photos."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from PIL import Image
from pytorch_grad_cam import EigenCAM, GradCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import (
    FasterRCNNBoxScoreTarget,
    SemanticSegmentationTarget,
)

from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam, compute_gradients
from service.engine.attribution.plan import plan_cam, plan_gradients
from tests.dense_models import SegmentationOutput, trainable
from tests.tiny_models import model_batch, pearson

SEG_LAYER = "backbone.16"
DET_LAYER = "backbone.fpn.layer_blocks.0"


class Case(NamedTuple):
    method: str
    cls: type


CASES = [Case("gradcam", GradCAM), Case("layercam", LayerCAM), Case("eigencam", EigenCAM)]


@pytest.fixture(scope="module")
def seg_batch(dense_models, photo_images: dict[str, Image.Image]) -> torch.Tensor:
    return model_batch(dense_models["seg"], list(photo_images.values()))


@pytest.fixture(scope="module")
def det_batch(dense_models, photo_images: dict[str, Image.Image]) -> torch.Tensor:
    return model_batch(dense_models["det"], [photo_images["china.jpg"]])


def _predicted(model: LoadedModel, batch: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.module(batch)["out"].argmax(dim=1)


@pytest.mark.parametrize("case", CASES, ids=[c.method for c in CASES])
@pytest.mark.parametrize("region", ["predicted", "10,20,70,90"])
def test_region_cams_match_pytorch_grad_cam(
    dense_models: dict[str, LoadedModel], seg_batch: torch.Tensor, case: Case, region: str
) -> None:
    model = dense_models["seg"]
    predicted = _predicted(model, seg_batch)
    category = 3
    assert bool((predicted == category).any(dim=(1, 2)).all())  # present in both photos
    plan = plan_cam(
        model, method=case.method, layers=[SEG_LAYER], targets="tree", region=region, normalize=True
    )
    ours = compute_cam(model, seg_batch, plan, inputs=np.zeros((2, 96, 96, 3), np.uint8))
    wrapped = SegmentationOutput(trainable(model.module))
    layer = dict(wrapped.model.named_modules())[SEG_LAYER]
    if region == "predicted":
        masks = [(m == category).float().numpy() for m in predicted]
    else:
        mask = np.zeros((96, 96), np.float32)
        mask[20:90, 10:70] = 1
        masks = [mask, mask]
    with case.cls(model=wrapped, target_layers=[layer]) as cam:
        theirs = cam(
            input_tensor=seg_batch.clone(),
            targets=[SemanticSegmentationTarget(category, m) for m in masks],
        )
    for image in range(2):
        r = pearson(ours.layers[0].maps[image, 0], theirs[image])
        assert r >= 0.99, (case.method, region, image, r)
    assert ours.targets.tolist() == [[category], [category]]
    assert ours.regions is not None
    np.testing.assert_array_equal(ours.regions[:, 0], np.stack(masks) > 0)


@pytest.mark.parametrize("case", CASES, ids=[c.method for c in CASES])
@pytest.mark.parametrize("how", ["detection", "box"])
def test_box_cams_match_pytorch_grad_cam(
    dense_models: dict[str, LoadedModel], det_batch: torch.Tensor, case: Case, how: str
) -> None:
    model = dense_models["det"]
    with torch.inference_mode():
        found = model.module(det_batch)[0]
    box, label = found["boxes"][1].numpy(), int(found["labels"][1])
    if how == "detection":
        options = {"detection": "1"}
    else:
        # A box near detection 1 (IoU > 0.5 with it), given with its label.
        box = box + np.array([1.0, -1.0, 1.0, 0.5], np.float32)
        options = {"targets": model.label(label), "box": ",".join(f"{v:.3f}" for v in box)}
        box = np.round(box, 3)
    plan = plan_cam(model, method=case.method, layers=[DET_LAYER], normalize=True, **options)
    ours = compute_cam(model, det_batch, plan, inputs=np.zeros((1, 160, 160, 3), np.uint8))
    reference = trainable(model.module)
    layer = dict(reference.named_modules())[DET_LAYER]
    with case.cls(model=reference, target_layers=[layer]) as cam:
        theirs = cam(
            input_tensor=det_batch.clone(),
            targets=[FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=[box])],
        )
    r = pearson(ours.layers[0].maps[0, 0], theirs[0])
    assert r >= 0.99, (case.method, how, r)
    assert ours.targets.tolist() == [[label]]
    assert ours.boxes is not None
    np.testing.assert_allclose(ours.boxes[0, 0], box, atol=1e-3)


def test_vanilla_gradients_of_a_region_equal_captum(
    dense_models: dict[str, LoadedModel], seg_batch: torch.Tensor
) -> None:
    model = dense_models["seg"]
    predicted = _predicted(model, seg_batch)
    category = 2
    mask = (predicted == category).float()
    plan = plan_gradients(model, method="vanilla", targets=str(category))
    ours = compute_gradients(model, seg_batch, plan, inputs=np.zeros((2, 96, 96, 3), np.uint8))
    module = trainable(model.module)

    def region_score(x: torch.Tensor) -> torch.Tensor:
        return (module(x)["out"][:, category] * mask).sum(dim=(1, 2))

    theirs = Saliency(region_score).attribute(seg_batch.clone(), abs=False)
    torch.testing.assert_close(
        torch.from_numpy(ours.values[:, 0]), theirs.detach(), rtol=1e-3, atol=1e-3
    )
    assert float(theirs.abs().max()) > 0


def test_a_box_no_detection_matches_gives_zero_maps(
    dense_models: dict[str, LoadedModel], det_batch: torch.Tensor
) -> None:
    """FasterRCNNBoxScoreTarget scores 0 when no detection of that label overlaps the box."""
    model = dense_models["det"]
    plan = plan_cam(model, method="gradcam", layers=[DET_LAYER], targets="dog", box="0,0,3,3")
    ours = compute_cam(model, det_batch, plan, inputs=np.zeros((1, 160, 160, 3), np.uint8))
    assert float(np.abs(ours.layers[0].maps).max()) == 0.0
