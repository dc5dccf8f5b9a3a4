"""POST /predict for segmentation (class shares, npy class map, png mask) and detection
(boxes in input and upload pixels, png), checked against the models' own outputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model_registry.registry import LoadedModel
from service.engine.images import preprocess
from tests.helpers import files, load_npy, png


@pytest.fixture(scope="module")
def uploads(photo_images: dict[str, Image.Image]) -> list[Image.Image]:
    """The two sample photos, shrunk (not square: 3:2) so the models run fast."""
    return [image.resize((150, 100), Image.Resampling.BILINEAR) for image in photo_images.values()]


def _post(client, model: str, images: list[Image.Image], **params):
    return client.post(
        f"/v1/models/{model}/predict", params=params, files=files(*[png(i) for i in images])
    )


def _own_output(model: LoadedModel, uploads: list[Image.Image]):
    """The model's own output for the uploads, preprocessed as the service does."""
    batch = preprocess(uploads, model.spec, torch.device("cpu"))
    with torch.inference_mode():
        return model.module(batch)


def test_segmentation_class_map_is_the_models_argmax(
    dense_client, dense_models: dict[str, LoadedModel], uploads: list[Image.Image]
) -> None:
    expected = _own_output(dense_models["seg"], uploads)["out"].argmax(dim=1).numpy()
    answer = _post(dense_client, "seg", uploads, format="npy")
    assert answer.status_code == 200, answer.text
    class_map = load_npy(answer.content)
    assert class_map.shape == (2, 96, 96) and class_map.dtype == np.int64
    np.testing.assert_array_equal(class_map, expected)
    assert len(np.unique(expected)) >= 3  # the seeded model is not degenerate

    body = _post(dense_client, "seg", uploads).json()
    assert body["task"] == "segmentation" and body["predictions"] == []
    for item, image_map in zip(body["segmentation"], expected, strict=True):
        counts = np.bincount(image_map.ravel(), minlength=5) / image_map.size
        shares = {c["class_index"]: c["fraction"] for c in item["classes"]}
        assert shares == pytest.approx({c: counts[c] for c in np.flatnonzero(counts)})
        fractions = [c["fraction"] for c in item["classes"]]
        assert fractions == sorted(fractions, reverse=True)
        assert {c["label"] for c in item["classes"]} <= {"background", "sky", "road", "tree", "car"}


def test_segmentation_png_is_a_mask_with_a_legend(dense_client, uploads) -> None:
    answer = _post(dense_client, "seg", uploads[:1], format="png", canvas="input")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(answer.content)))
    assert picture.shape[0] >= 256 and picture.shape[1] > 256 + 100  # picture + legend
    assert picture[:, 256:].min() < 100  # legend text and swatches


def test_detections_are_the_models_own_boxes(
    dense_client, dense_models: dict[str, LoadedModel], uploads: list[Image.Image]
) -> None:
    expected = _own_output(dense_models["det"], uploads)
    body = _post(dense_client, "det", uploads).json()
    assert body["task"] == "detection"
    for found, reference, fit in zip(body["detections"], expected, body["fitting"], strict=True):
        assert len(found) == len(reference["boxes"]) > 0
        scores = [d["score"] for d in found]
        assert scores == sorted(scores, reverse=True)
        order = reference["scores"].argsort(descending=True, stable=True)
        np.testing.assert_allclose(
            [d["box"] for d in found], reference["boxes"][order].numpy(), atol=0.01
        )
        assert [d["class_index"] for d in found] == reference["labels"][order].tolist()
        # Squashed 150 x 100 -> 160 x 160: x scales by 150/160, y by 100/160.
        assert fit["source_size"] == [100, 150]
        scale = np.array([150 / 160, 100 / 160, 150 / 160, 100 / 160])
        np.testing.assert_allclose(
            [d["source_box"] for d in found], np.array([d["box"] for d in found]) * scale, atol=0.02
        )


def test_detection_png_draws_boxes(dense_client, uploads) -> None:
    answer = _post(dense_client, "det", uploads[:1], format="png", canvas="input")
    assert answer.status_code == 200
    picture = np.asarray(Image.open(io.BytesIO(answer.content)))
    plain = np.asarray(uploads[0].resize((256, 256)))
    assert picture.shape == (256, 256, 3)
    assert np.abs(picture.astype(int) - plain.astype(int)).max() > 100  # boxes drawn


@pytest.mark.parametrize(
    ("model", "fmt", "choices"), [("det", "npy", ["json", "png"]), ("seg", "svg", None)]
)
def test_formats_a_task_lacks_are_422(dense_client, uploads, model, fmt, choices) -> None:
    answer = _post(dense_client, model, uploads[:1], format=fmt)
    assert answer.status_code == 422
    assert "format" in answer.text
    if choices:
        assert answer.json()["choices"] == choices
