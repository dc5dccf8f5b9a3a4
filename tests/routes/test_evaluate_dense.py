"""/evaluate on a segmentation model with a region target and a detection model with a box
target, over HTTP: the values equal the references on the same maps. The region's pixels
(or the box filled) are the localisation mask (Quantus); deletion is the RISE curve of the
region's or box's score as pytorch-grad-cam's `SemanticSegmentationTarget` and
`FasterRCNNBoxScoreTarget` read it; ROAD and the confidence change are pytorch-grad-cam's own
metrics given those targets. The metrics a region or box cannot have, a target of another
task and the dataset endpoint answer 422."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
import quantus
import torch
from fastapi.testclient import TestClient
from PIL import Image
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import (
    FasterRCNNBoxScoreTarget,
    SemanticSegmentationTarget,
)

from model_registry.registry import LoadedModel
from service.engine.attribution.target_objects import BoxTarget, RegionTarget, Target
from service.engine.evaluation.explainers import plan_explainer
from service.engine.evaluation.metrics.prepare import pixel_saliency, unit_range
from tests.dense_models import SegmentationOutput
from tests.helpers import error_body, files, png
from tests.tiny_models import model_batch

METHODS = ("gradcam", "vanilla")
TREE = 3  # a class of `seg` present in both photos
X0, Y0, X1, Y1 = 10, 20, 70, 90  # the region, in the 96 x 96 input's pixels
STEPS = 8
SEG_METRICS = "deletion,pointing-game,relevance-mass,sparseness,road-combined,drop-in-confidence"
DET_METRICS = "deletion,pointing-game,relevance-mass,sparseness"


class Case(NamedTuple):
    """A dense model's request, the maps of its methods and the references' view of it."""

    body: dict[str, Any]
    batch: torch.Tensor
    maps: dict[str, np.ndarray]  # method -> [B, A, H, W], as /evaluate computes them
    masks: np.ndarray  # bool [B, H, W]
    scores: list[Callable[[Any], torch.Tensor]]  # per image: grad-cam's target callable
    module: torch.nn.Module  # the model as the references call it


def _post(client: TestClient, url: str, pictures: list[Image.Image]) -> dict[str, Any]:
    answer = client.post(url, files=files(*[png(p) for p in pictures]))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _maps(model: LoadedModel, batch: torch.Tensor, target: Target) -> dict[str, np.ndarray]:
    return {
        method: plan_explainer(model, method, {}).maps(model, batch, target).numpy()
        for method in METHODS
    }


@pytest.fixture(scope="module")
def seg_case(dense_client: TestClient, dense_models, photo_images) -> Case:
    model = dense_models["seg"]
    pictures = [photo_images["china.jpg"], photo_images["flower.jpg"]]
    options = (
        f"options.deletion.steps={STEPS}&options.road-combined.road_noise=0"
        "&options.road-combined.road_percentiles=20,50,80"
    )
    body = _post(
        dense_client,
        f"/v1/models/seg/evaluate?methods={','.join(METHODS)}&metrics={SEG_METRICS}"
        f"&target=tree&region={X0},{Y0},{X1},{Y1}&{options}",
        pictures,
    )
    batch = model_batch(model, pictures)
    mask = np.zeros((96, 96), np.float32)
    mask[Y0:Y1, X0:X1] = 1
    target = RegionTarget(
        torch.full((2, 1), TREE), torch.from_numpy(np.stack([mask, mask]))[:, None]
    )
    scores = [SemanticSegmentationTarget(TREE, mask) for _ in pictures]
    wrapped = SegmentationOutput(model.module)
    return Case(
        body, batch, _maps(model, batch, target), np.stack([mask, mask]) > 0, scores, wrapped
    )


@pytest.fixture(scope="module")
def det_case(dense_client: TestClient, dense_models, photo_images) -> Case:
    model = dense_models["det"]
    pictures = [photo_images["china.jpg"]]
    batch = model_batch(model, pictures)
    with torch.inference_mode():
        found = model.module(batch)[0]
    box = np.round(found["boxes"][1].numpy().astype(np.float64), 2)
    label = int(found["labels"][1])
    text = ",".join(f"{v:.2f}" for v in box)
    body = _post(
        dense_client,
        f"/v1/models/det/evaluate?methods={','.join(METHODS)}&metrics={DET_METRICS}"
        f"&target={model.label(label)}&box={text}&options.deletion.steps={STEPS}",
        pictures,
    )
    target = BoxTarget(torch.tensor([[label]]), torch.tensor(box, dtype=torch.float32)[None, None])
    mask = np.zeros((160, 160), bool)  # every pixel the box touches
    mask[
        int(np.floor(box[1])) : int(np.ceil(box[3])), int(np.floor(box[0])) : int(np.ceil(box[2]))
    ] = True
    scores = [FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=[box.astype(np.float32)])]
    return Case(body, batch, _maps(model, batch, target), mask[None], scores, model.module)


def _values(case: Case, method: str, metric: str) -> np.ndarray:
    found = next(m for m in case.body["methods"] if m["method"] == method)["metrics"][metric]
    assert all(v is not None for v in found), (method, metric, found)
    values = np.asarray(found, np.float64)
    assert np.isfinite(values).all(), (method, metric, values)
    return values


def _deletion(case: Case, saliency: np.ndarray) -> np.ndarray:
    """RISE deletion written out: the most salient pixels first (ties by position) set to the
    all-zero normalized input, STEPS + 1 points, the target callable's score, trapezoid AUC."""
    count, height, width = saliency.shape
    taken = torch.round(torch.linspace(0, height * width, STEPS + 1)).long().tolist()
    out = []
    for image in range(count):
        order = np.argsort(-saliency[image].ravel(), kind="stable")
        curve = []
        for k in taken:
            kept = np.ones(height * width, np.float32)
            kept[order[:k]] = 0
            inputs = case.batch[image : image + 1] * torch.from_numpy(kept).view(
                1, 1, height, width
            )
            with torch.no_grad():
                curve.append(float(case.scores[image](case.module(inputs)[0])))
        out.append(np.trapezoid(curve, dx=1.0 / STEPS))
    return np.asarray(out)


def _quantus(case: Case, metric: Any, maps: np.ndarray) -> np.ndarray:
    return np.asarray(
        metric(
            model=None,
            x_batch=case.batch.numpy(),
            y_batch=np.zeros(len(maps), np.int64),
            a_batch=maps.copy(),
            s_batch=case.masks[:, None].astype(np.float32),
            channel_first=True,
            device="cpu",
        ),
        np.float64,
    )


def _scale(values: np.ndarray) -> float:
    return float(np.abs(values).max())


@pytest.mark.parametrize("name", ["seg_case", "det_case"])
@pytest.mark.parametrize("method", METHODS)
def test_localisation_and_complexity_equal_quantus_on_the_region_or_box(
    request: pytest.FixtureRequest, name: str, method: str
) -> None:
    case: Case = request.getfixturevalue(name)
    maps = case.maps[method]
    per_pixel = pixel_saliency(maps)[:, None]  # the map as the localisation metrics read it
    for metric, reference, given in (
        ("relevance-mass", quantus.RelevanceMassAccuracy(disable_warnings=True), per_pixel),
        ("pointing-game", quantus.PointingGame(disable_warnings=True), per_pixel),
        ("sparseness", quantus.Sparseness(disable_warnings=True), maps),
    ):
        got = _values(case, method, metric)
        np.testing.assert_allclose(got, _quantus(case, reference, given), rtol=0, atol=1e-5)
    assert case.masks.any(axis=(1, 2)).all()


@pytest.mark.parametrize("name", ["seg_case", "det_case"])
@pytest.mark.parametrize("method", METHODS)
def test_deletion_follows_the_region_or_box_score(
    request: pytest.FixtureRequest, name: str, method: str
) -> None:
    case: Case = request.getfixturevalue(name)
    theirs = _deletion(case, pixel_saliency(case.maps[method]))
    got = _values(case, method, "deletion")
    np.testing.assert_allclose(got, theirs, rtol=1e-5, atol=1e-5 * _scale(theirs))


@pytest.mark.parametrize("method", METHODS)
def test_road_and_confidence_equal_grad_cam_with_a_segmentation_target(
    seg_case: Case, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytorch_grad_cam.metrics import road

    # grad-cam builds its imputers with the default noise inside its averagers: set it to 0
    monkeypatch.setattr(
        road.NoisyLinearImputer.__init__, "__defaults__", (0.0, road.neighbors_weights)
    )
    cams = unit_range(pixel_saliency(seg_case.maps[method]))
    with torch.no_grad():
        scores = np.asarray(
            [
                float(t(o))
                for t, o in zip(seg_case.scores, seg_case.module(seg_case.batch), strict=True)
            ]
        )
    tolerance = 1e-5 * _scale(scores)  # sums of ~4,000 logits, in float32
    for metric, reference in (
        ("road-combined", ROADCombined([20, 50, 80])),
        ("drop-in-confidence", DropInConfidence()),
    ):
        theirs = np.asarray(
            reference(seg_case.batch, cams, seg_case.scores, seg_case.module), np.float64
        ).reshape(-1)
        got = _values(seg_case, method, metric)
        np.testing.assert_allclose(got, theirs, rtol=0, atol=tolerance, err_msg=metric)


def test_the_region_and_box_targets_are_reported(seg_case: Case, det_case: Case) -> None:
    assert seg_case.body["targets"] == [TREE, TREE]
    assert det_case.body["targets"] == [det_case.scores[0].labels[0]]


@pytest.mark.parametrize(
    ("url", "field", "words"),
    [
        (
            "/v1/models/seg/evaluate?methods=gradcam&metrics=sparseness,random-logit&region=all",
            "metrics",
            ("random-logit", "other class", "sparseness"),
        ),
        (
            "/v1/models/det/evaluate?methods=gradcam&metrics=random-logit&detection=0",
            "metrics",
            ("random-logit", "detection model"),
        ),
        (
            "/v1/models/seg/evaluate?methods=gradcam&metrics=pointing-game&detection=0",
            "detection",
            ("segmentation model", "region="),
        ),
        (
            "/v1/models/seg/evaluate?methods=gradcam&metrics=pointing-game&target=tree,car",
            "target",
            ("one target per image",),
        ),
        (
            "/v1/models/det/evaluate?methods=gradcam&metrics=pointing-game&region=all",
            "region",
            ("detection model", "box="),
        ),
        (
            "/v1/models/seg/datasets/digits/evaluate?methods=gradcam&metrics=sparseness",
            "model",
            ("/v1/models/seg/evaluate", "region"),
        ),
        (
            "/v1/models/det/datasets/digits/evaluate?methods=gradcam&metrics=sparseness",
            "model",
            ("/v1/models/det/evaluate", "box"),
        ),
    ],
)
def test_what_a_region_or_box_cannot_have_is_a_422_naming_it(
    dense_client: TestClient, url: str, field: str, words: tuple[str, ...]
) -> None:
    picture = png(Image.new("RGB", (32, 32), (90, 120, 150)))
    body = error_body(dense_client.post(url, files=files(picture)), 422, field)
    for word in words:
        assert word in body["detail"], (word, body["detail"])
