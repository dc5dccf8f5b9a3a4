"""CAM and gradient pictures are drawn on the uploaded picture's own geometry.

resnet18 as `make serve` serves it resizes the short side to 256 and crops the centre 224
(torchvision's weights transform): a 640 x 427 photo loses a band on each side, which the
picture shows faded instead of stretching the crop back to a square.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.engine.upload_view import OUTSIDE_FADE

MARGIN, TITLE = 8, 18  # service/engine/render.py's _MARGIN and _TITLE_HEIGHT
FADE = OUTSIDE_FADE


def _panel(client, url: str, data: bytes) -> np.ndarray:
    answer = client.post(url, files={"image": ("china.png", data, "image/png")})
    assert answer.status_code == 200, answer.text
    return np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))


def _tile(panel: np.ndarray, column: int, size: tuple[int, int]) -> np.ndarray:
    left = MARGIN + column * (size[1] + MARGIN)
    top = MARGIN + TITLE
    return panel[top : top + size[0], left : left + size[1]].astype(np.int32)


@pytest.mark.parametrize("endpoint", ["cam", "gradients?view=gradient&"])
def test_maps_are_drawn_on_the_upload_with_the_cropped_band_faded(
    default_client, photo_images: dict[str, Image.Image], china_png: bytes, endpoint: str
) -> None:
    sep = "" if endpoint.endswith("&") else "?"
    panel = _panel(default_client, f"/v1/models/resnet18/{endpoint}{sep}target=3", china_png)
    size = (214, 320)  # the 640 x 427 upload at display size, aspect kept
    assert panel.shape == (2 * MARGIN + TITLE + size[0], 3 * MARGIN + 2 * size[1], 3)
    shown = np.asarray(
        photo_images["china.jpg"].resize((size[1], size[0]), Image.Resampling.BILINEAR)
    ).astype(np.int32)
    # Crop box in upload pixels: x 133.4 to 506.6, y 26.7 to 400.3 (display columns 66.7 to
    # 253.3, rows 13.3 to 200.1).
    picture, drawing = _tile(panel, 0, size), _tile(panel, 1, size)
    faded = np.round(shown + (255 - shown) * FADE).astype(np.int32)
    assert np.abs(picture[:, :66] - faded[:, :66]).max() <= 1
    assert np.abs(picture[:, 254:] - faded[:, 254:]).max() <= 1
    assert np.abs(picture[:13] - faded[:13]).max() <= 1
    assert np.abs(picture[14:200, 68:253] - shown[14:200, 68:253]).max() <= 1  # seen: as is
    # The map covers the crop only: outside it the drawing is as faded as the picture.
    assert (drawing[:, :66] >= np.round(255 * FADE) - 1).all()
    assert np.abs(drawing[14:200, 68:253] - shown[14:200, 68:253]).mean() > 10


def test_canvas_input_draws_on_the_model_input(default_client, china_png: bytes) -> None:
    panel = _panel(default_client, "/v1/models/resnet18/cam?canvas=input", china_png)
    assert panel.shape == (2 * MARGIN + TITLE + 224, 3 * MARGIN + 2 * 224, 3)
    bad = default_client.post(
        "/v1/models/resnet18/cam?canvas=page",
        files={"image": ("china.png", china_png, "image/png")},
    )
    assert bad.status_code == 422 and "canvas" in bad.text and "upload" in bad.text


def test_feature_map_overlays_follow_the_upload(
    default_client, photo_images: dict[str, Image.Image], china_png: bytes
) -> None:
    url = "/v1/models/resnet18/feature-maps?layers=layer1&channels=0,1&overlay=true&labels=false"
    upload = _panel(default_client, url + "&upsample=96&columns=2", china_png)
    column, tile = (85, 128), (64, 96)  # the input at 128 px, tiles at 96 px: both 3:2
    assert upload.shape == (2 * MARGIN + TITLE + 85, 3 * MARGIN + 128 + 2 * 96 + 2, 3)
    picture = _tile(upload, 0, column)
    shown = np.asarray(photo_images["china.jpg"].resize((128, 85), Image.Resampling.BILINEAR))
    faded = np.round(shown.astype(np.int32) + (255 - shown) * FADE)
    band = np.abs(picture[:, :26] - faded[:, :26])  # the cropped band, faded (resized twice)
    assert band.mean() < 1.0 and band.max() <= 8
    left, top = 2 * MARGIN + 128, MARGIN + TITLE
    first = upload[top : top + tile[0], left : left + tile[1]].astype(np.int32)
    assert (first[:, :19] >= np.round(255 * FADE) - 1).all()  # no map where the crop cut
    assert first[:, 22:70].std() > 10
    square = _panel(default_client, url + "&upsample=96&columns=2&canvas=input", china_png)
    assert square.shape == (2 * MARGIN + TITLE + 128, 3 * MARGIN + 128 + 2 * 96 + 2, 3)
