"""Reductions; PCA equals scikit-learn's up to sign."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from model_registry.errors import InvalidInput
from service.engine.reduce import check_reduce, reduce_channels


@pytest.mark.parametrize("shape", [(8, 14, 14), (64, 7, 9), (3, 5, 5), (200, 28, 28)])
def test_pca_matches_scikit_learn_up_to_sign(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    maps = rng.normal(size=shape).astype(np.float32)
    # distinct leading variances: well-separated components (as in real layers)
    maps[0] *= 6.0
    maps[1] = 4.0 * maps[1] + 0.5 * maps[0]
    maps[2] *= 2.5
    ours = reduce_channels(maps[None], "pca")[0]
    k, h, w = shape
    reference = PCA(n_components=3).fit_transform(maps.reshape(k, -1).T).T.reshape(3, h, w)
    for component in range(3):
        a, b = ours[component].ravel(), reference[component].ravel()
        sign = np.sign(np.dot(a, b))
        # scikit-learn picks a randomized solver for larger inputs: allow its approximation error
        np.testing.assert_allclose(a, sign * b, rtol=1e-3, atol=5e-3 * np.abs(b).max())


def test_pca_on_a_real_layer_matches_scikit_learn(china_png: bytes) -> None:
    import io

    import torchvision
    from PIL import Image

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    image = np.asarray(Image.open(io.BytesIO(china_png)).resize((64, 64)), dtype=np.float32) / 255
    with torch.no_grad():
        maps = model.layer1(
            model.maxpool(
                model.relu(model.bn1(model.conv1(torch.from_numpy(image).permute(2, 0, 1)[None])))
            )
        )
    ours = reduce_channels(maps.numpy(), "pca")[0]
    reference = PCA(n_components=3).fit_transform(maps[0].reshape(64, -1).T.numpy()).T
    for component in range(3):
        r = np.corrcoef(ours[component].ravel(), reference[component])[0, 1]
        assert abs(r) > 0.9999


def test_mean_sum_max_keep_one_channel() -> None:
    maps = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    assert np.array_equal(reduce_channels(maps, "sum")[0, 0], maps[0, 0] + maps[0, 1])
    assert np.array_equal(reduce_channels(maps, "mean")[0, 0], (maps[0, 0] + maps[0, 1]) / 2)
    assert np.array_equal(reduce_channels(maps, "max")[0, 0], maps[0, 1])
    assert reduce_channels(maps, "max").shape == (1, 1, 3, 4)


def test_pca_needs_three_channels_and_positions() -> None:
    with pytest.raises(InvalidInput, match="at least 3"):
        check_reduce("pca", selected=2, positions=49, layer="conv1")
    with pytest.raises(InvalidInput, match="layer 'fc'"):
        check_reduce("pca", selected=10, positions=1, layer="fc")
    check_reduce("mean", selected=1, positions=1, layer="fc")
