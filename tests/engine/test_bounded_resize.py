"""A crop model's resize allocates only what the crop keeps once the whole copy would be
large: the same picture as the whole resize up to the 8-bit rounding between Pillow's
passes, at the crop's size whatever the aspect ratio."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from model_registry.config import default_specs
from model_registry.spec import ModelSpec
from service.engine.geometry import crop_plan
from service.engine.images import WHOLE_RESIZE_PIXELS, to_model_image


@pytest.fixture(scope="module")
def resnet_spec() -> ModelSpec:
    spec = default_specs()[1]
    assert (spec.resize, spec.input_size) == ("crop", (224, 224))
    return spec


# Filters without negative lobes differ by one 8-bit level at most; bicubic and lanczos
# overshoot, and Pillow rounds and clips between its two passes, whose order it picks from
# the sizes: a few levels on a few pixels, none on average.
TOLERANCE = {"nearest": (1, 0.01), "bilinear": (1, 0.2), "bicubic": (8, 0.3), "lanczos": (8, 0.3)}


@pytest.mark.parametrize("interpolation", sorted(TOLERANCE))
@pytest.mark.parametrize("size", [(640, 427), (427, 640), (40, 427), (640, 20)])
def test_the_crops_region_alone_resizes_like_the_whole_picture(
    resnet_spec: ModelSpec, photo_images, interpolation: str, size: tuple[int, int]
) -> None:
    spec = dataclasses.replace(resnet_spec, interpolation=interpolation)
    worst, mean = TOLERANCE[interpolation]
    for photo in photo_images.values():
        picture = photo.resize(size, Image.Resampling.BILINEAR)
        whole, geometry = to_model_image(picture, spec)
        region, same = to_model_image(picture, spec, whole_resize_pixels=0)
        assert same == geometry and region.size == whole.size == (224, 224)
        diff = np.abs(np.asarray(region, np.int16) - np.asarray(whole, np.int16))
        assert diff.max() <= worst and diff.mean() <= mean, (diff.max(), diff.mean())


@pytest.mark.parametrize(("width", "height"), [(1, 20_002), (20_002, 1), (3, 50_000)])
def test_a_strip_is_fitted_at_the_crops_size(
    resnet_spec: ModelSpec, width: int, height: int
) -> None:
    resized_w, resized_h, _, _ = crop_plan(resnet_spec, width, height)
    assert resized_w * resized_h > 1000 * WHOLE_RESIZE_PIXELS / 4  # what a whole resize makes
    picture = Image.new("RGB", (width, height), (40, 160, 90))
    fitted, geometry = to_model_image(picture, resnet_spec)
    assert fitted.size == (224, 224)
    assert (np.asarray(fitted) == (40, 160, 90)).all()  # a flat picture stays flat
    left, top, right, bottom = geometry.box
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
