"""Model insight over HTTP: every endpoint through the real app (ASGI, lifespan), the
acceptance checks, and client mistakes answered with 4xx JSON, never a 500."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import error_body
from tests.insight_support import client, digit_pngs, jpeg, noise_images, photo, png

FILES = list[tuple[str, tuple[str, bytes, str]]]


def files(*uploads: bytes, media: str = "image/png") -> FILES:
    return [("image", (f"i{n}.png", data, media)) for n, data in enumerate(uploads)]


def npy(response) -> np.ndarray:  # noqa: ANN001 - httpx response
    assert response.headers["content-type"] == "application/x-npy", response.text[:300]
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def picture(response) -> Image.Image:  # noqa: ANN001
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def registry_module(api: TestClient, name: str) -> torch.nn.Module:
    return api.app.state.registry.get(name).module  # type: ignore[attr-defined]


# --- filters -------------------------------------------------------------------------------


def test_filters_npy_is_the_weight_tensor(api: TestClient) -> None:
    weights = npy(api.get("/v1/models/tinyres/layers/layer2.0.conv1/filters?format=npy"))
    expected = (
        registry_module(api, "tinyres").get_submodule("layer2.0.conv1").weight.detach().numpy()
    )
    assert weights.dtype == np.float32 and weights.shape == (128, 64, 3, 3)
    np.testing.assert_array_equal(weights, expected)
    some = npy(api.get("/v1/models/digits/layers/conv2/filters?format=npy&channels=1,4-5"))
    np.testing.assert_array_equal(
        some, registry_module(api, "digits").conv2.weight.detach().numpy()[[1, 4, 5]]
    )


@pytest.mark.parametrize(
    "query",
    [
        "/v1/models/tinyres/layers/conv1/filters",
        "/v1/models/tinyres/layers/layer1.0.conv1/filters?view=inputs&channels=first:4&inputs=first:8",
        "/v1/models/digits/layers/conv3/filters?channels=top:8&scale=shared&colormap=coolwarm",
        "/v1/models/digits/layers/conv1/filters?upsample=48&labels=false&columns=8",
    ],
)
def test_filters_png(api: TestClient, query: str) -> None:
    image = picture(api.get(query))
    assert image.mode == "RGB" and image.width > 64 and image.height > 32


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("/v1/models/digits/layers/relu1/filters", 404, "layer"),
        ("/v1/models/digits/layers/convv1/filters", 404, "layer"),
        ("/v1/models/nope/layers/conv1/filters", 404, "model"),
        ("/v1/models/digits/layers/conv1/filters?channels=32", 422, "channels"),
        ("/v1/models/digits/layers/conv1/filters?channels=x", 422, "channels"),
        ("/v1/models/digits/layers/conv2/filters?view=rgb", 422, "view"),
        ("/v1/models/digits/layers/conv2/filters?view=sideways", 422, "view"),
        ("/v1/models/digits/layers/conv2/filters?colormap=nope", 422, "colormap"),
        ("/v1/models/digits/layers/conv2/filters?format=gif", 422, "format"),
    ],
)
def test_filters_errors(api: TestClient, query: str, status: int, field: str) -> None:
    error_body(api.get(query), status, field)


def test_filters_error_names_the_layers_that_have_weights(api: TestClient) -> None:
    body = api.get("/v1/models/digits/layers/bn2/filters").json()
    assert body["layers_with_weights"] == ["conv1", "conv2", "conv3"]
    assert "conv1, conv2, conv3" in body["detail"]


# --- maximize ------------------------------------------------------------------------------


def test_maximize_png_at_input_size_and_deterministic(api: TestClient) -> None:
    url = "/v1/models/digits/layers/relu2/maximize?channel=4&steps=40&seed=7&async=false"
    first, second = api.post(url), api.post(url)
    image = picture(first)
    assert (image.width, image.height) == (32, 32) and image.mode == "L"
    assert first.content == second.content
    assert api.post(url.replace("seed=7", "seed=8")).content != first.content
    rgb = picture(api.post("/v1/models/tinyres/layers/layer1/maximize?channel=2&steps=8"))
    assert (rgb.width, rgb.height, rgb.mode) == (64, 64, "RGB")


def test_maximize_excites_its_channel_five_times_more_than_noise(api: TestClient) -> None:
    """The acceptance test: the result's activation >= 5x the channel's mean over noise images."""
    result = npy(api.post("/v1/models/digits/layers/relu3/maximize?channel=3&format=npy"))
    assert result.shape == (1, 32, 32) and result.dtype == np.float32
    assert result.min() >= 0.0 and result.max() <= 1.0
    module = registry_module(api, "digits")
    activations = {}
    handle = module.relu3.register_forward_hook(
        lambda _m, _i, out: activations.__setitem__("out", out)
    )
    try:
        with torch.inference_mode():
            module((torch.from_numpy(result)[None] - 0.5) / 0.5)
            achieved = float(activations["out"][0, 3].mean())
            module((torch.from_numpy(noise_images(16, 1, (32, 32))) - 0.5) / 0.5)
            noise = float(activations["out"][:, 3].mean())
    finally:
        handle.remove()
    assert noise > 0
    assert achieved >= 5 * noise, (achieved, noise)


def test_maximize_json_has_the_activation_curve(api: TestClient) -> None:
    response = api.post(
        "/v1/models/digits/layers/relu3/maximize?channel=5&neuron=2,3&steps=30&format=json"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["target"] == "channel 5 at x=2, y=3" and body["neuron"] == [2, 3]
    assert len(body["curve"]) == 30 and body["size"] == [32, 32]
    assert body["activation"] > body["noise_activation"]
    assert Image.open(io.BytesIO(base64.b64decode(body["png_base64"]))).size == (32, 32)
    direction = ",".join(["0.5"] * 128)
    other = api.post(
        f"/v1/models/digits/layers/relu3/maximize?direction={direction}&steps=5&format=json&size=40"
    )
    assert (
        other.status_code == 200
        and other.json()["direction"] is True
        and other.json()["size"] == [40, 40]
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("channel=128", "channel"),
        ("channel=-1", "channel"),
        ("", "channel"),
        ("channel=1&steps=601", "steps"),
        ("channel=1&steps=0", "steps"),
        ("channel=1&size=129", "size"),
        ("channel=1&size=7", "size"),
        ("channel=1&lr=nan", "lr"),
        ("channel=1&lr=inf", "lr"),
        ("channel=1&lr=-0.1", "lr"),
        ("channel=1&tv=-1", "tv"),
        ("channel=1&tv=infinity", "tv"),
        ("channel=1&neuron=8,8", "neuron"),
        ("channel=1&neuron=a,b", "neuron"),
        ("direction=1,2,3", "direction"),
        ("direction=" + ",".join(["1e999"] * 128), "direction"),
        ("channel=1&seed=-3", "seed"),
        ("channel=1&format=gif", "format"),
        ("channel=1&async=maybe", "async"),
    ],
)
def test_maximize_errors(api: TestClient, query: str, field: str) -> None:
    error_body(api.post(f"/v1/models/digits/layers/relu3/maximize?{query}"), 422, field)


def test_maximize_layer_errors(api: TestClient) -> None:
    assert api.post("/v1/models/digits/layers/relu33/maximize?channel=1").status_code == 404
    unusable = api.post("/v1/models/digits/layers/fc/maximize?channel=1&neuron=0,0")
    assert unusable.status_code == 422 and unusable.json()["field"] == "neuron"


# --- invert --------------------------------------------------------------------------------


def test_invert_png_and_json(api: TestClient) -> None:
    photo_bytes = jpeg(photo())
    image = picture(
        api.post("/v1/models/digits/layers/conv1/invert?steps=20", files=files(photo_bytes))
    )
    assert image.size == (32, 32)
    response = api.post(
        "/v1/models/digits/layers/relu2/invert?format=json",
        files=files(photo_bytes, media="image/jpeg"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["loss"]) == 200 and len(body["distance"]) == 201
    # The acceptance test: the feature distance drops by >= 90% from the starting point.
    assert body["distance_drop"] >= 0.9
    assert body["distance"][-1] <= 0.1 * body["distance"][0]
    rgb = npy(
        api.post(
            "/v1/models/tinyres/layers/layer1/invert?format=npy&steps=5", files=files(photo_bytes)
        )
    )
    assert rgb.shape == (3, 64, 64) and rgb.min() >= 0 and rgb.max() <= 1


def test_shallow_inversion_is_closer_to_the_photo_than_deep(api: TestClient) -> None:
    upload = files(jpeg(photo("flower.jpg")))
    target = np.asarray(
        Image.open(io.BytesIO(jpeg(photo("flower.jpg")))).convert("L").resize((32, 32)), np.float32
    )
    errors = {}
    for layer in ("conv1", "relu3"):
        result = npy(
            api.post(f"/v1/models/digits/layers/{layer}/invert?format=npy&steps=150", files=upload)
        )
        errors[layer] = float(np.abs(result[0] * 255 - target).mean())
    assert errors["conv1"] < errors["relu3"] / 2, errors


@pytest.mark.parametrize(
    ("query", "uploads", "status", "field"),
    [
        ("", 2, 422, "image"),
        ("steps=601", 1, 422, "steps"),
        ("tv=nan", 1, 422, "tv"),
        ("norm=-inf", 1, 422, "norm"),
        ("alpha=0.5", 1, 422, "alpha"),
        ("beta=inf", 1, 422, "beta"),
    ],
)
def test_invert_errors(api: TestClient, query: str, uploads: int, status: int, field: str) -> None:
    digit, _ = digit_pngs(1)
    response = api.post(
        f"/v1/models/digits/layers/relu2/invert?{query}", files=files(*digit * uploads)
    )
    error_body(response, status, field)


def test_invert_upload_errors(api: TestClient) -> None:
    assert api.post("/v1/models/digits/layers/relu2/invert").status_code == 422
    bad = api.post("/v1/models/digits/layers/relu2/invert?steps=2", files=files(b"not an image"))
    assert bad.status_code == 415 and bad.json()["field"] == "image"


# --- stats ---------------------------------------------------------------------------------


def test_stats_json_every_layer(api: TestClient) -> None:
    uploads, _ = digit_pngs(5)
    response = api.post("/v1/models/digits/stats", files=files(*uploads))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["images"] == 5 and len(body["layers"]) == 13
    names = [layer["name"] for layer in body["layers"]]
    assert names[:3] == ["conv1", "bn1", "relu1"] and names[-1] == "fc"
    relu1 = body["layers"][2]
    assert set(relu1) >= {"sparsity", "mean", "std", "max", "dead_fraction", "channel_means"}
    assert 0 < relu1["sparsity"] < 1 and relu1["mean"] >= 0 and len(relu1["channel_means"]) == 32
    assert relu1["shape"] == [32, 32, 32]
    depths = [layer["depth"] for layer in body["layers"]]
    assert depths == sorted(depths)


def test_stats_png_and_selected_layers(api: TestClient) -> None:
    photo_bytes = jpeg(photo())
    image = picture(api.post("/v1/models/tinyres/stats?format=png", files=files(photo_bytes)))
    assert image.width >= 400 and image.height >= 300
    some = api.post("/v1/models/digits/stats?layers=relu3,relu1", files=files(photo_bytes)).json()
    assert [layer["name"] for layer in some["layers"]] == ["relu1", "relu3"]


def test_stats_errors(api: TestClient) -> None:
    uploads, _ = digit_pngs(1)
    assert (
        api.post("/v1/models/digits/stats?layers=relu9", files=files(*uploads)).status_code == 404
    )
    assert api.post("/v1/models/digits/stats?format=svg", files=files(*uploads)).status_code == 422
    assert api.post("/v1/models/digits/stats").status_code == 422
    too_many = api.post("/v1/models/digits/stats", files=files(*uploads * 33))
    assert too_many.status_code == 413


# --- embedding -----------------------------------------------------------------------------


def test_tsne_of_300_digits_separates_the_classes(api: TestClient) -> None:
    """The acceptance test: t-SNE of 300 digits on the digits model, 5-NN accuracy in 2-D >= 0.9."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    uploads, labels = digit_pngs(300)
    response = api.post(
        "/v1/models/digits/embedding?method=tsne&seed=0&perplexity=30",
        files=files(*uploads),
        data={"labels": ",".join(str(label) for label in labels)},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        body["layer"] == "input of fc"
        and body["feature_dim"] == 128
        and body["explained_variance"] is None
    )
    points = np.array(body["points"])
    assert points.shape == (300, 2) and body["labels"] == [str(label) for label in labels]
    accuracy = cross_val_score(KNeighborsClassifier(n_neighbors=5), points, labels, cv=5).mean()
    assert accuracy >= 0.9, accuracy


def test_embedding_takes_over_a_thousand_small_images(api: TestClient) -> None:
    uploads, labels = digit_pngs(1100)
    assert sum(len(u) for u in uploads) < 200_000  # small images: the request is about 0.2 MB
    response = api.post(
        "/v1/models/digits/embedding?method=pca&async=false",
        files=files(*uploads),
        data={"labels": [str(label) for label in labels]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 1100 and len(body["points"]) == 1100
    first, second = body["explained_variance"]
    assert 1 >= first >= second > 0


def test_embedding_png_scatter(api: TestClient) -> None:
    uploads, labels = digit_pngs(40)
    data = {"labels": "\n".join(str(label) for label in labels)}
    plain = picture(
        api.post("/v1/models/digits/embedding?format=png", files=files(*uploads), data=data)
    )
    thumbs = picture(
        api.post(
            "/v1/models/digits/embedding?format=png&thumbnails=true&layer=relu2",
            files=files(*uploads),
            data=data,
        )
    )
    assert plain.width > 560 and thumbs.size == plain.size


@pytest.mark.parametrize(
    ("query", "count", "data", "status", "field"),
    [
        ("", 5, {"labels": "1,2"}, 422, "labels"),
        ("method=umap", 5, None, 422, "method"),
        ("method=tsne&perplexity=5", 5, None, 422, "perplexity"),
        ("method=tsne&perplexity=nan", 5, None, 422, "perplexity"),
        ("method=tsne", 3, None, 422, "image"),
        ("", 1, None, 422, "image"),
        ("layer=nope", 5, None, 404, "layer"),
        ("layer=fc", 5, None, 200, None),
    ],
)
def test_embedding_errors(
    api: TestClient, query: str, count: int, data: dict | None, status: int, field: str | None
) -> None:
    uploads, _ = digit_pngs(count)
    response = api.post(f"/v1/models/digits/embedding?{query}", files=files(*uploads), data=data)
    assert response.status_code == status, response.text
    if field is not None:
        assert response.json()["field"] == field


def test_embedding_without_images(api: TestClient) -> None:
    response = api.post("/v1/models/digits/embedding", data={"labels": "1"})
    assert response.status_code == 422 and response.json()["field"] == "image"
    assert api.post("/v1/models/digits/embedding").status_code in (400, 422)


def test_embedding_image_cap_is_its_own_setting(tmp_path: pytest.TempPathFactory) -> None:
    uploads, _ = digit_pngs(12)
    with client(tmp_path, max_embedding_images=10, max_images=2) as small:
        over = small.post("/v1/models/digits/embedding", files=files(*uploads))
        assert over.status_code == 413 and over.json()["max_images"] == 10
        assert (
            small.post("/v1/models/digits/embedding", files=files(*uploads[:10])).status_code == 200
        )


def test_openapi_lists_the_insight_endpoints(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/models/{model}/layers/{layer}/filters",
        "/v1/models/{model}/layers/{layer}/maximize",
        "/v1/models/{model}/layers/{layer}/invert",
        "/v1/models/{model}/stats",
        "/v1/models/{model}/embedding",
        "/v1/jobs/{job_id}",
    ):
        assert path in paths
    assert (
        "multipart/form-data"
        in paths["/v1/models/{model}/embedding"]["post"]["requestBody"]["content"]
    )


def test_requests_leave_the_shared_models_clean(api: TestClient) -> None:
    for name in ("digits", "tinyres"):
        module = registry_module(api, name)
        assert all(not m._forward_hooks for m in module.modules())
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())
        assert not any(m.training for m in module.modules())


def test_png_helper_roundtrip() -> None:
    assert Image.open(io.BytesIO(png(Image.new("L", (3, 3))))).size == (3, 3)
