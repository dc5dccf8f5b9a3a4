"""Prediction pictures (`/predict?format=png`) on the uploaded picture's own geometry:
the class map sampled onto a 3:2 photo, boxes at their place in upload pixels (squashed
and letterboxed inputs), and `canvas=input` drawing on the model input instead."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model_registry.registry import LoadedModel
from service.engine.dense.pictures import palette
from service.engine.images import preprocess
from tests.helpers import files, png


@pytest.fixture(scope="module")
def photo(photo_images: dict[str, Image.Image]) -> Image.Image:
    """A 3:2 photo of 300 x 200: drawn at its own size (the display side is 128-320)."""
    return photo_images["china.jpg"].resize((300, 200), Image.Resampling.BILINEAR)


def _post(client, model: str, image: Image.Image, **params):
    answer = client.post(f"/v1/models/{model}/predict", params=params, files=files(png(image)))
    assert answer.status_code == 200, answer.text
    return answer


def _picture(answer) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB")).astype(int)


def test_mask_is_sampled_onto_the_upload(
    dense_client, dense_models: dict[str, LoadedModel], photo: Image.Image
) -> None:
    model = dense_models["seg"]
    with torch.inference_mode():
        class_map = model.module(preprocess([photo], model.spec, torch.device("cpu")))["out"]
    class_map = class_map.argmax(dim=1)[0].numpy()  # [96, 96] over the squashed photo
    picture = _picture(_post(dense_client, "seg", photo, format="png"))
    assert picture.shape[:2] == (200, 300 + 170)  # the photo's own shape, then the legend
    rows = np.floor((np.arange(200) + 0.5) * 96 / 200).astype(int)
    cols = np.floor((np.arange(300) + 0.5) * 96 / 300).astype(int)
    placed = class_map[rows][:, cols]
    expected = 0.5 * np.asarray(photo, float) + 0.5 * palette(5)[placed]
    close = np.abs(picture[:, :300] - expected).max(axis=2) <= 1
    assert close.mean() > 0.99, close.mean()  # cell borders may round either way


def _largest(detections: list[dict]) -> dict:
    """The detection of largest box: its bottom edge is long and crossed by few others."""
    return max(detections, key=lambda d: (d["box"][2] - d["box"][0]) * (d["box"][3] - d["box"][1]))


def _edge_share(picture: np.ndarray, box: list[float], colour: np.ndarray, shift: int = 0) -> float:
    """The share of the box's bottom edge row (`shift` rows lower) drawn in `colour`."""
    x0, _, x1, y1 = (int(round(v)) for v in box)
    row = picture[min(y1 + shift, picture.shape[0] - 1), max(x0, 0) + 3 : x1 - 3]
    return float((np.abs(row - colour).max(axis=1) == 0).mean())


def test_boxes_are_drawn_where_they_are_in_the_upload(dense_client, photo: Image.Image) -> None:
    found = _largest(_post(dense_client, "det", photo).json()["detections"][0])
    colour = palette(5)[found["class_index"]]
    picture = _picture(_post(dense_client, "det", photo, format="png"))
    assert picture.shape == (200, 300, 3)
    # Squashed 300 x 200 -> 160 x 160: the box in upload pixels is where it is drawn.
    assert _edge_share(picture, found["source_box"], colour) > 0.8
    assert _edge_share(picture, found["source_box"], colour, shift=4) < 0.2
    assert _edge_share(picture, found["box"], colour) < 0.2  # not at its input-pixel place


def test_canvas_input_draws_on_the_model_input(dense_client, photo: Image.Image) -> None:
    found = _largest(_post(dense_client, "det", photo).json()["detections"][0])
    colour = palette(5)[found["class_index"]]
    picture = _picture(_post(dense_client, "det", photo, format="png", canvas="input"))
    assert picture.shape == (256, 256, 3)  # the 160 x 160 input, enlarged to 256
    assert _edge_share(picture, [v * 256 / 160 for v in found["box"]], colour) > 0.8


def test_letterboxed_boxes_land_on_the_upload(hf_dense_client, photo: Image.Image) -> None:
    """hdet letterboxes: the 96 x 96 input covers the 300 x 200 photo plus 50 px bands."""
    body = _post(hf_dense_client, "hdet", photo).json()
    assert body["fitting"][0]["box"] == pytest.approx([0, -50, 300, 250])
    top = body["detections"][0][0]
    x0, y0, x1, y1 = top["box"]
    np.testing.assert_allclose(
        top["source_box"],
        [x0 * 300 / 96, y0 * 300 / 96 - 50, x1 * 300 / 96, y1 * 300 / 96 - 50],
        atol=0.02,
    )
    picture = _picture(_post(hf_dense_client, "hdet", photo, format="png"))
    assert picture.shape == (200, 300, 3)
    colour = palette(4)[top["class_index"]]
    x0, y0, x1, y1 = (int(round(v)) for v in top["source_box"])
    column = picture[max(y0, 0) : min(y1, 199), x0]
    assert (np.abs(column - colour).max(axis=1) == 0).mean() > 0.5, "left edge not drawn"
