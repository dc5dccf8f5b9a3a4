"""Every client mistake is a JSON 4xx naming the field; nothing a client sends is a 500."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import error_body, files, png

FM = "/v1/models/resnet18/feature-maps"


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but carries almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_unknown_model_lists_the_models(default_client: TestClient, china_png: bytes) -> None:
    body = error_body(
        default_client.post("/v1/models/resnet19/feature-maps", files=files(china_png)),
        404,
        "model",
    )
    assert body["choices"] == ["digits", "resnet18"]
    error_body(default_client.get("/v1/models/nope/layers"), 404, "model")
    for name in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "resnet18%00"):
        assert default_client.get(f"/v1/models/{name}").status_code == 404


def test_unknown_layer_names_closest_and_catalog(
    default_client: TestClient, china_png: bytes
) -> None:
    body = error_body(
        default_client.post(f"{FM}?layers=layer3,layr4", files=files(china_png)), 404, "layers"
    )
    assert "layer4" in body["closest"] and body["catalog"] == "/v1/models/resnet18/layers"
    assert "GET /v1/models/resnet18/layers" in body["detail"]


@pytest.mark.parametrize(
    ("query", "field", "member"),
    [
        ("channels=first:0", "channels", "grammar"),
        ("channels=3-1", "channels", "grammar"),
        ("channels=bogus", "channels", "grammar"),
        ("layers=conv1&channels=0,64", "channels", "valid_range"),
        ("layers=conv1&channels=2&reduce=pca", "reduce", None),
        ("reduce=median", "reduce", "choices"),
        ("format=gif", "format", "choices"),
        ("scale=global", "scale", "choices"),
        ("colormap=rainbowz", "colormap", "choices"),
        ("columns=0", "columns", None),
        ("upsample=100000", "upsample", None),
        ("overlay=maybe", "overlay", None),
        ("layers=fc&channels=all&reduce=pca", "reduce", None),
    ],
)
def test_bad_options_are_422_naming_the_field(
    default_client: TestClient, china_png: bytes, query: str, field: str, member: str | None
) -> None:
    body = error_body(default_client.post(f"{FM}?{query}", files=files(china_png)), 422, field)
    if member:
        assert body[member]


def test_choices_are_listed(default_client: TestClient, china_png: bytes) -> None:
    body = error_body(
        default_client.post(f"{FM}?reduce=median", files=files(china_png)), 422, "reduce"
    )
    assert body["choices"] == ["none", "pca", "mean", "sum", "max"]
    assert (
        "viridis"
        in error_body(
            default_client.post(f"{FM}?colormap=x", files=files(china_png)), 422, "colormap"
        )["choices"]
    )
    error_body(
        default_client.post("/v1/models/digits/predict?top_k=11", files=files(china_png)),
        422,
        "top_k",
    )
    error_body(
        default_client.post("/v1/models/digits/predict?top_k=0", files=files(china_png)),
        422,
        "top_k",
    )


def test_missing_empty_and_undecodable_images(default_client: TestClient, china_png: bytes) -> None:
    body = error_body(default_client.post(FM), 422, "image")
    assert "multipart" in body["detail"]
    error_body(
        default_client.post(FM, files={"picture": ("a.png", china_png, "image/png")}), 422, "image"
    )
    error_body(default_client.post(FM, files=files(b"")), 422, "image")
    body = error_body(
        default_client.post(FM, files=files(b"this is not an image at all")), 415, "image"
    )
    assert "PNG" in body["formats"]
    error_body(default_client.post(FM, files=files(china_png, b"GIF89a garbage")), 415, "image")
    error_body(
        default_client.post(FM, content=b"raw bytes", headers={"content-type": "image/png"}),
        422,
        "image",
    )


def test_truncated_image_is_a_4xx(default_client: TestClient, photo_images) -> None:
    jpeg = png(photo_images["china.jpg"], fmt="JPEG")
    answer = default_client.post(FM, files=files(jpeg[: len(jpeg) // 3]))
    assert answer.status_code in (415, 422)
    truncated_png = png(photo_images["flower.jpg"])[:5000]
    assert default_client.post(FM, files=files(truncated_png)).status_code == 415


def test_pixel_limit_is_decided_from_the_header(default_client: TestClient) -> None:
    bomb = _png_header(50_000, 50_000)  # 2.5 gigapixels claimed in 100 bytes
    body = error_body(default_client.post(FM, files=files(bomb)), 413, "image")
    assert body["max_pixels"] == 40_000_000
    error_body(default_client.post(FM, files=files(_png_header(8000, 6000))), 413, "image")


def test_odd_but_valid_images_work(default_client: TestClient, photo_images) -> None:
    frames = [
        photo_images["china.jpg"].resize((64, 48)),
        photo_images["flower.jpg"].resize((64, 48)),
    ]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    rgba = png(photo_images["flower.jpg"].convert("RGBA").resize((50, 70)))
    gray = png(photo_images["china.jpg"].convert("L"))
    answer = default_client.post(
        f"{FM}?layers=conv1&format=npy", files=files(gif.getvalue(), rgba, gray)
    )
    assert answer.status_code == 200, answer.text


def test_too_many_images(default_client: TestClient, digit_pngs: list[bytes]) -> None:
    body = error_body(
        default_client.post("/v1/models/digits/predict", files=files(*(digit_pngs * 4))),
        413,
        "image",
    )
    assert body["max_images"] == 32


def test_errors_leave_no_hooks_and_service_healthy(
    default_client: TestClient, china_png: bytes
) -> None:
    default_client.post(f"{FM}?layers=nope", files=files(china_png))
    default_client.post(f"{FM}?channels=0,999", files=files(china_png))
    for model in default_client.app.state.registry:
        assert all(
            not m._forward_hooks and not m._forward_pre_hooks for m in model.module.modules()
        )
    assert default_client.get("/readyz").status_code == 200
    assert (
        default_client.post(f"{FM}?layers=layer1&format=npy", files=files(china_png)).status_code
        == 200
    )


def test_unexpected_failure_is_a_bare_500_and_the_next_request_works(
    tiny_client: TestClient, tiny_inputs: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.workers.tasks as tasks

    real = tasks.maps_from_outputs

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals /home/model.py line 3")

    monkeypatch.setattr(tasks, "maps_from_outputs", broken)
    client = TestClient(tiny_client.app, raise_server_exceptions=False)  # answer as a server would
    answer = client.post(
        "/v1/models/tiny-resnet/feature-maps",
        files=files(tiny_inputs[0]),
        headers={"X-Request-ID": "abc123"},
    )
    assert answer.status_code == 500
    assert answer.json() == {"detail": "Internal server error", "request_id": "abc123"}
    monkeypatch.setattr(tasks, "maps_from_outputs", real)
    assert (
        client.post("/v1/models/tiny-resnet/feature-maps", files=files(tiny_inputs[0])).status_code
        == 200
    )


def test_openapi_declares_media_types(default_client: TestClient) -> None:
    schema = default_client.get("/openapi.json").json()
    content = schema["paths"]["/v1/models/{model}/feature-maps"]["post"]["responses"]["200"][
        "content"
    ]
    assert {"image/png", "application/x-npy", "application/zip", "application/json"} <= set(content)
    assert default_client.get("/docs").status_code == 200


def test_image_at_input_size_passes_unchanged(default_client: TestClient) -> None:
    from model_registry.config import default_specs
    from service.engine.images import to_model_image

    spec = dataclasses.replace(default_specs()[1], resize="squash")
    picture = Image.new("RGB", (224, 224), (10, 20, 30))
    fitted, geometry = to_model_image(picture, spec)
    assert fitted is picture and geometry.box == (0.0, 0.0, 224.0, 224.0)
