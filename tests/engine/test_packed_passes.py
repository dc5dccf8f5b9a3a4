"""Which passes run on packed convolutions: a CAM's do, feature maps and predictions do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model_registry.config import default_specs
from model_registry.fast_paths.packed_convolution import packed_layers
from model_registry.registry import LoadedModel, load_model
from service.engine.attribution.maps import cam_maps
from service.engine.capture import capture
from service.engine.images import preprocess

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pair() -> tuple[LoadedModel, LoadedModel]:
    """resnet18 as served, and the same weights with torch's kernels only."""
    spec = default_specs()[1]
    return load_model(spec, CPU), load_model(spec, CPU, pack_convolutions=False)


def batch_shapes(model: LoadedModel) -> set[tuple[int, ...]]:
    """Input shapes of batches (more than one picture) the stem has reordered weights for."""
    return {k for k in packed_layers(model.module)[0]._layerscope_packs.by_shape if k[0] > 1}


def test_cams_use_packed_weights_and_feature_maps_keep_torch_values(
    pair: tuple[LoadedModel, LoadedModel], photo_images: dict[str, Image.Image]
) -> None:
    served, exact = pair
    assert len(packed_layers(served.module)) == 20 and packed_layers(exact.module) == []
    batch = preprocess(list(photo_images.values()), served.spec, CPU)  # two photos

    for _ in range(2):
        ours = capture(served.module, batch, {"layer3": 1, "layer4": 1})
        theirs = capture(exact.module, batch, {"layer3": 1, "layer4": 1})
        for name in ours:
            assert torch.equal(ours[name], theirs[name])  # torch's kernel, bitwise
        with torch.inference_mode():
            assert torch.equal(served.module(batch), exact.module(batch))
    assert batch_shapes(served) == set()  # never packed outside a CAM

    cams = [cam_maps(model, batch, "gradcam", ("layer3", "layer4"), ()) for model in pair]
    assert batch_shapes(served) == {(2, 3, 224, 224)}
    fast, reference = cams
    assert torch.equal(fast.targets, reference.targets)
    for layer in ("layer3", "layer4"):
        a, b = fast.maps[layer].numpy(), reference.maps[layer].numpy()
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99999
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(np.abs(b).max()))
    again = cam_maps(served, batch, "gradcam", ("layer3", "layer4"), ())
    for layer in ("layer3", "layer4"):  # equal requests, equal answers
        assert torch.equal(again.maps[layer], fast.maps[layer])
