"""Feature maps over HTTP equal a torchvision forward hook on the same weights and input."""

from __future__ import annotations

import base64
import io
import zipfile

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from sklearn.decomposition import PCA

from tests.helpers import files, load_npy, seeded_resnet
from tests.numerics import assert_float32_close

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
URL = "/v1/models/tiny-resnet/feature-maps"


def npy_of(client: TestClient, url: str, uploads: list[bytes]) -> np.ndarray:
    """The npy answer of a POST of `uploads` to `url`."""
    answer = client.post(url, files=files(*uploads))
    assert answer.status_code == 200, answer.text
    return load_npy(answer.content)


def reference_batch(pngs: list[bytes]) -> torch.Tensor:
    """What a user's script does: ToTensor + Normalize on 64x64 RGB pictures."""
    arrays = [
        np.asarray(Image.open(io.BytesIO(p)).convert("RGB"), dtype=np.float32) / 255 for p in pngs
    ]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # as ToTensor
    return (batch - MEAN) / STD


@pytest.fixture(scope="module")
def reference(tiny_inputs: list[bytes]) -> dict[str, torch.Tensor]:
    model = seeded_resnet(7)
    outputs: dict[str, torch.Tensor] = {}
    names = ["conv1", "layer1", "layer2.1.bn2", "layer3", "layer4", "avgpool", "fc"]
    # clone: the true module output, before ReLU(inplace=True) or `out += identity` rewrites it
    handles = [
        model.get_submodule(n).register_forward_hook(
            lambda _m, _i, o, n=n: outputs.__setitem__(n, o.clone())
        )
        for n in names
    ]
    with torch.no_grad():
        model(reference_batch(tiny_inputs))
    for h in handles:
        h.remove()
    return outputs


@pytest.mark.parametrize("layer", ["conv1", "layer1", "layer2.1.bn2", "layer3", "layer4"])
def test_all_channels_equal_a_torchvision_hook(
    tiny_client: TestClient,
    tiny_inputs: list[bytes],
    reference: dict[str, torch.Tensor],
    layer: str,
) -> None:
    answer = tiny_client.post(
        f"{URL}?layers={layer}&channels=all&format=npy", files=files(*tiny_inputs)
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-npy"
    values = load_npy(answer.content)
    assert values.dtype == np.float32 and values.shape == tuple(reference[layer].shape)
    # The reference runs both pictures as one batch, the server one at a time: oneDNN may pick
    # other kernels for each (tests/numerics.py says why this tolerance).
    assert_float32_close(values, reference[layer])


def test_channel_list_and_several_layers_give_an_npz(
    tiny_client: TestClient, tiny_inputs: list[bytes], reference: dict[str, torch.Tensor]
) -> None:
    answer = tiny_client.post(
        f"{URL}?layers=layer3,conv1&channels=0,3,8-10&format=npy", files=files(*tiny_inputs)
    )
    assert answer.headers["content-type"] == "application/zip"
    archive = np.load(io.BytesIO(answer.content))
    assert sorted(archive.files) == ["conv1", "layer3"]
    for layer in ("conv1", "layer3"):
        assert_float32_close(archive[layer], reference[layer][:, [0, 3, 8, 9, 10]])
    assert zipfile.is_zipfile(io.BytesIO(answer.content))


def test_top_last_and_vector_layers(
    tiny_client: TestClient, tiny_inputs: list[bytes], reference: dict[str, torch.Tensor]
) -> None:
    top = npy_of(tiny_client, f"{URL}?layers=layer2.1.bn2&channels=top:5&format=npy", tiny_inputs)
    means = reference["layer2.1.bn2"].mean(dim=(2, 3))
    for b in range(2):
        index = means[b].argsort(descending=True)[:5]
        assert_float32_close(top[b], reference["layer2.1.bn2"][b, index])
    last = npy_of(tiny_client, f"{URL}?layers=layer4&channels=last:4&format=npy", tiny_inputs)
    assert_float32_close(last, reference["layer4"][:, -4:])
    fc = npy_of(tiny_client, f"{URL}?layers=fc&channels=all&format=npy", tiny_inputs)
    assert_float32_close(fc[:, :, 0, 0], reference["fc"])


@pytest.mark.parametrize("reduce", ["mean", "sum", "max"])
def test_reductions_over_http(
    tiny_client: TestClient,
    tiny_inputs: list[bytes],
    reference: dict[str, torch.Tensor],
    reduce: str,
) -> None:
    values = npy_of(
        tiny_client, f"{URL}?layers=layer1&channels=first:8&reduce={reduce}&format=npy", tiny_inputs
    )
    selected = reference["layer1"][:, :8]
    expected = {
        "mean": selected.mean(1, keepdim=True),
        "sum": selected.sum(1, keepdim=True),
        "max": selected.amax(1, keepdim=True),
    }[reduce]
    assert values.shape == (2, 1, 16, 16)
    assert_float32_close(values, expected)


def test_pca_over_http_matches_scikit_learn(
    tiny_client: TestClient, tiny_inputs: list[bytes], reference: dict[str, torch.Tensor]
) -> None:
    values = npy_of(
        tiny_client, f"{URL}?layers=layer1&channels=all&reduce=pca&format=npy", tiny_inputs
    )
    assert values.shape == (2, 3, 16, 16)
    for b in range(2):
        maps = reference["layer1"][b].reshape(64, -1).T.numpy()
        expected = PCA(n_components=3).fit_transform(maps).T
        for c in range(3):
            assert abs(np.corrcoef(values[b, c].ravel(), expected[c])[0, 1]) > 0.9999


def test_png_panel_has_the_expected_layout(
    tiny_client: TestClient, tiny_inputs: list[bytes]
) -> None:
    answer = tiny_client.post(
        f"{URL}?layers=conv1&channels=first:9&upsample=32&labels=false", files=files(tiny_inputs[0])
    )
    assert answer.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(answer.content))
    # one row: margin, 128 px input, margin, 3x3 grid of 32 px tiles with 2 px gaps, margin
    grid = 3 * 32 + 2 * 2
    assert image.size == (8 + 128 + 8 + grid + 8, 8 + 18 + 128 + 8)
    pixels = np.asarray(image.convert("RGB"))
    tile = pixels[8 + 18 : 8 + 18 + 32, 8 + 128 + 8 : 8 + 128 + 8 + 32]
    assert len(np.unique(tile.reshape(-1, 3), axis=0)) > 10  # a real map, not a blank


def test_png_rows_per_image_and_overlay(tiny_client: TestClient, tiny_inputs: list[bytes]) -> None:
    one = Image.open(
        io.BytesIO(
            tiny_client.post(
                f"{URL}?layers=layer1,layer2&channels=first:4", files=files(tiny_inputs[0])
            ).content
        )
    )
    two = Image.open(
        io.BytesIO(
            tiny_client.post(
                f"{URL}?layers=layer1,layer2&channels=first:4&overlay=true&colormap=magma",
                files=files(*tiny_inputs),
            ).content
        )
    )
    assert two.size[0] == one.size[0] and two.size[1] > 1.8 * one.size[1]


def test_json_answer_describes_the_arrays(
    tiny_client: TestClient, tiny_inputs: list[bytes], reference: dict[str, torch.Tensor]
) -> None:
    answer = tiny_client.post(
        f"{URL}?layers=layer1,conv1&channels=top:3&format=json", files=files(*tiny_inputs)
    )
    body = answer.json()
    assert answer.status_code == 200 and body["batch"] == 2 and body["reduce"] == "none"
    layers = {layer["name"]: layer for layer in body["layers"]}
    assert [layer["name"] for layer in body["layers"]] == ["conv1", "layer1"]  # forward order
    assert layers["layer1"]["shape"] == [2, 3, 16, 16] and layers["layer1"]["layer_shape"] == [
        64,
        16,
        16,
    ]
    for b in range(2):
        channels = layers["layer1"]["channels"][b]
        expected = reference["layer1"][b, channels]
        assert_float32_close(layers["layer1"]["max"][b], expected.amax(dim=(1, 2)))
        assert_float32_close(layers["layer1"]["min"][b], expected.amin(dim=(1, 2)))
    picture = Image.open(io.BytesIO(base64.b64decode(body["png_base64"])))
    assert picture.format == "PNG" and picture.size[1] > 2 * 128


def test_default_layer_is_the_deepest_spatial_one(
    tiny_client: TestClient, tiny_inputs: list[bytes]
) -> None:
    body = tiny_client.post(f"{URL}?format=json", files=files(tiny_inputs[0])).json()
    assert [layer["name"] for layer in body["layers"]] == ["layer4"]
    assert body["layers"][0]["shape"] == [1, 16, 2, 2]


def test_resize_and_grayscale_preprocessing(
    default_client: TestClient, china_png: bytes, digit_pngs: list[bytes]
) -> None:
    """A 427x640 photo is resized and centre-cropped as torchvision's resnet18 weights expect
    (short side 256, centre 224); an RGB upload to a 1-channel model becomes L."""
    from torchvision.transforms import functional as TF

    photo = Image.open(io.BytesIO(china_png))
    cropped = TF.center_crop(TF.resize(photo, 256), 224)
    resized = np.asarray(cropped, dtype=np.float32) / 255
    batch = (torch.from_numpy(resized).permute(2, 0, 1)[None] - MEAN) / STD
    served = load_npy(
        default_client.post(
            "/v1/models/resnet18/feature-maps?layers=conv1&channels=0-3&format=npy",
            files=files(china_png),
        ).content
    )
    from model_registry.config import default_specs
    from model_registry.loading import build_model

    model = build_model(default_specs()[1]).module
    with torch.no_grad():
        np.testing.assert_allclose(served, model.conv1(batch)[:, :4].numpy(), rtol=1e-4, atol=1e-4)
    rgb_digit = Image.open(io.BytesIO(digit_pngs[3])).convert("RGB")
    buffer = io.BytesIO()
    rgb_digit.save(buffer, format="PNG")
    as_rgb = default_client.post(
        "/v1/models/digits/predict?top_k=1", files=files(buffer.getvalue())
    ).json()
    assert as_rgb["predictions"][0][0]["label"] == "3"
