"""Maps placed back on the uploaded picture's geometry (squash, crop, letterbox)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from model_registry.config import default_specs
from service.engine.images import Geometry, fit_geometry
from service.engine.upload_view import UploadView, upload_view


def _view(source: tuple[int, int], box: tuple[float, ...], display: tuple[int, int]) -> UploadView:
    picture = np.zeros((*display, 3), np.uint8)
    return UploadView(picture, Geometry("crop", source, box))  # type: ignore[arg-type]


def test_whole_picture_placement_is_torchs_bilinear_resize() -> None:
    values = np.random.default_rng(0).normal(size=(2, 7, 5)).astype(np.float32)
    view = _view((70, 50), (0.0, 0.0, 50.0, 70.0), (140, 100))
    expected = F.interpolate(
        torch.from_numpy(values)[None], size=(140, 100), mode="bilinear", align_corners=False
    )[0].numpy()
    np.testing.assert_allclose(view.place(values), expected, atol=1e-5)
    assert view.inside.all()


def test_crop_places_the_map_on_the_centre_and_marks_the_rest_unseen() -> None:
    view = _view((100, 200), (50.0, 0.0, 150.0, 100.0), (100, 200))  # the centre square
    hot = np.zeros((4, 4), np.float32)
    hot[1, 3] = 1.0  # row 1, column 3: upload x in [125, 150), y in [25, 50)
    placed = view.place(hot, nearest=True)
    inside = view.inside
    rows, cols = np.nonzero((placed == 1.0) & inside)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (25, 49, 125, 149)
    assert not inside[:, :50].any() and not inside[:, 151:].any() and inside[:, 50:150].all()


def test_letterbox_box_reaches_past_the_picture() -> None:
    spec = dataclasses.replace(default_specs()[1], resize="letterbox")
    geometry = fit_geometry((100, 200), spec)  # wide: padded above and below
    np.testing.assert_allclose(geometry.box, (0.0, -50.0, 200.0, 150.0), atol=1e-9)
    ramp = np.tile(np.arange(8, dtype=np.float32)[:, None], (1, 8))  # rows 0..7 top to bottom
    view = UploadView(np.zeros((100, 200, 3), np.uint8), geometry)
    placed = view.place(ramp)
    # The picture is the middle half of the model input: rows 2..6 of the map, not 0..7.
    assert 1.5 < placed[0].mean() < 2.0 and 5.0 < placed[-1].mean() < 5.5
    assert view.inside.all()


def test_upload_view_keeps_the_uploads_aspect_and_colours() -> None:
    picture = Image.new("RGB", (640, 427), (10, 200, 30))
    view = upload_view(picture, default_specs()[1])
    assert view.picture.shape == (214, 320, 3)  # longer side 320, aspect kept
    assert tuple(view.picture[100, 100]) == (10, 200, 30)
    assert view.geometry.source_size == (427, 640) and view.geometry.resize == "crop"
