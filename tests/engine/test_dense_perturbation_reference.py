"""ScoreCAM and AblationCAM of a region and of a box against pytorch-grad-cam
(SemanticSegmentationTarget, FasterRCNNBoxScoreTarget), on the seeded torchvision
segmenter and detector of tests/dense_models.py and a real photo. The layers are early ones
with 16 channels, so the one-pass-per-channel methods stay cheap."""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import AblationCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import (
    FasterRCNNBoxScoreTarget,
    SemanticSegmentationTarget,
)

from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam
from service.engine.attribution.plan import plan_cam
from tests.dense_models import SegmentationOutput
from tests.tiny_models import model_batch, pearson

SEG_LAYER = "backbone.1"  # 16 channels, 48 x 48 (no ReLU at its end: negative values)
DET_LAYER = "backbone.body.1"  # 16 channels


class Case(NamedTuple):
    method: str
    cls: type


CASES = [Case("scorecam", ScoreCAM), Case("ablationcam", AblationCAM)]


@pytest.fixture(scope="module")
def photo(photo_images: dict[str, Image.Image]) -> Image.Image:
    return photo_images["china.jpg"]


@pytest.mark.parametrize("case", CASES, ids=[c.method for c in CASES])
def test_region_perturbation_cams_match_pytorch_grad_cam(
    dense_models: dict[str, LoadedModel], photo: Image.Image, case: Case
) -> None:
    model = dense_models["seg"]
    batch = model_batch(model, [photo])
    with torch.inference_mode():
        predicted = model.module(batch)["out"].argmax(dim=1)[0]
    category = 3
    mask = (predicted == category).float().numpy()
    assert mask.sum() > 50
    plan = plan_cam(model, method=case.method, layers=[SEG_LAYER], targets="tree")
    ours = compute_cam(model, batch, plan, inputs=np.zeros((1, 96, 96, 3), np.uint8))
    reference = SegmentationOutput(copy.deepcopy(model.module))
    layer = dict(reference.model.named_modules())[SEG_LAYER]
    with case.cls(model=reference, target_layers=[layer]) as cam:
        theirs = cam(input_tensor=batch.clone(), targets=[SemanticSegmentationTarget(3, mask)])
    assert float(theirs.max()) > 0
    r = pearson(ours.layers[0].maps[0, 0], theirs[0])
    assert r >= 0.99, (case.method, r)


@pytest.mark.parametrize("case", CASES, ids=[c.method for c in CASES])
def test_box_perturbation_cams_match_pytorch_grad_cam(
    dense_models: dict[str, LoadedModel], photo: Image.Image, case: Case
) -> None:
    model = dense_models["det"]
    batch = model_batch(model, [photo])
    with torch.inference_mode():
        found = model.module(batch)[0]
    box, label = found["boxes"][0].numpy(), int(found["labels"][0])
    plan = plan_cam(model, method=case.method, layers=[DET_LAYER], detection="0")
    ours = compute_cam(model, batch, plan, inputs=np.zeros((1, 160, 160, 3), np.uint8))
    reference = copy.deepcopy(model.module)
    layer = dict(reference.named_modules())[DET_LAYER]
    target = FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=[box])
    with case.cls(model=reference, target_layers=[layer]) as cam:
        theirs = cam(input_tensor=batch.clone(), targets=[target])
    assert float(theirs.max()) > 0
    r = pearson(ours.layers[0].maps[0, 0], theirs[0])
    assert r >= 0.99, (case.method, r)
