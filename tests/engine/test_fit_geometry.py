"""to_model_image: squash, crop and letterbox, and the geometry it reports."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image
from torchvision.transforms import functional as TF

from model_registry.config import default_specs
from model_registry.spec import ModelSpec
from service.engine.images import fit_geometry, to_model_image


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    from sklearn.datasets import load_sample_images

    return Image.fromarray(load_sample_images().images[0])  # china.jpg, 640 x 427


@pytest.fixture(scope="module")
def resnet_spec() -> ModelSpec:
    return default_specs()[1]


def test_torchvision_weights_default_to_their_resize_and_centre_crop(
    resnet_spec: ModelSpec, photo: Image.Image
) -> None:
    assert (resnet_spec.resize, resnet_spec.crop_pct) == ("crop", 224 / 256)
    ours, geometry = to_model_image(photo, resnet_spec)
    reference = TF.center_crop(TF.resize(photo, 256), 224)  # torchvision's recipe, on PIL
    assert ours.size == (224, 224)
    assert np.array_equal(np.asarray(ours), np.asarray(reference))
    # Resized to 383 x 256, cut at (80, 16): that region in upload pixels.
    sx, sy = 640 / 383, 427 / 256
    assert geometry.source_size == (427, 640)
    np.testing.assert_allclose(geometry.box, (80 * sx, 16 * sy, 304 * sx, 240 * sy))


def test_timm_crop_pct_keeps_timms_scale_and_centre(photo: Image.Image) -> None:
    from timm.data import create_transform

    spec = dataclasses.replace(default_specs()[1], input_size=(64, 64), crop_pct=0.95)
    ours, _ = to_model_image(photo, spec)
    timm_eval = create_transform(input_size=(3, 64, 64), crop_pct=0.95, interpolation="bilinear")
    reference = timm_eval.transforms[1](timm_eval.transforms[0](photo))  # resize, centre crop
    assert np.array_equal(np.asarray(ours), np.asarray(reference))


def test_squash_stretches_the_whole_picture(resnet_spec: ModelSpec, photo: Image.Image) -> None:
    spec = dataclasses.replace(resnet_spec, resize="squash")
    ours, geometry = to_model_image(photo, spec)
    expected = photo.resize((224, 224), Image.Resampling.BILINEAR, reducing_gap=None)
    assert np.array_equal(np.asarray(ours), np.asarray(expected))
    assert geometry.box == (0.0, 0.0, 640.0, 427.0)


def test_letterbox_pads_with_the_mean_colour(resnet_spec: ModelSpec, photo: Image.Image) -> None:
    spec = dataclasses.replace(resnet_spec, resize="letterbox")
    ours, geometry = to_model_image(photo, spec)
    pixels = np.asarray(ours)
    inner = round(427 * 224 / 640)  # 149 rows of picture
    top = (224 - inner) // 2
    mean = np.round(np.array(spec.mean) * 255)
    assert (pixels[:top] == mean).all() and (pixels[top + inner :] == mean).all()
    expected = photo.resize((224, inner), Image.Resampling.BILINEAR, reducing_gap=None)
    assert np.array_equal(pixels[top : top + inner], np.asarray(expected))
    left, upper, right, lower = geometry.box
    assert (left, right) == (0.0, 640.0) and upper < 0 < 427 < lower
    assert lower - upper == pytest.approx(640.0)


def test_geometry_without_pixels_equals_what_was_done(resnet_spec: ModelSpec) -> None:
    for mode in ("squash", "crop", "letterbox"):
        spec = dataclasses.replace(resnet_spec, resize=mode)
        picture = Image.new("RGB", (300, 500))
        assert to_model_image(picture, spec)[1] == fit_geometry((500, 300), spec)
