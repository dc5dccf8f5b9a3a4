"""The portal over plain HTTP: the page, its files, the samples; no browser needed."""

from __future__ import annotations

import io
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.engine import render
from service.routes.ui import STATIC, assets
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MEDIA = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


@pytest.mark.parametrize("path", ["/ui", "/ui/"])
def test_the_page_is_served_with_a_strict_content_security_policy(
    default_client: TestClient, path: str
) -> None:
    answer = default_client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/app.js">' in answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert answer.headers["cache-control"] == "no-cache"


def test_every_file_of_the_page_is_served_with_its_media_type(default_client: TestClient) -> None:
    names = sorted(assets())
    assert {"index.html", "app.js", "api.js", "style.css"} <= set(names)
    for name in names:
        answer = default_client.get(f"/ui/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith(MEDIA[Path(name).suffix]), name
        assert answer.content == (STATIC / name).read_bytes()
        assert "etag" in answer.headers


def test_the_page_loads_only_its_own_files() -> None:
    """Every reference resolves to a served file; nothing comes from another host (no CDN)."""
    served = set(assets())
    html = (STATIC / "index.html").read_text()
    for reference in re.findall(r'(?:src|href)="(/ui/[^"]+)"', html):
        assert reference.removeprefix("/ui/") in served, reference
    for name in served:
        text = (STATIC / name).read_text().replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://", text), f"{name} reaches another host"
        for module in re.findall(r'from "\./([^"]+)"', text):
            assert module in served, f"{name} imports missing {module}"


@pytest.mark.parametrize(
    "path", ["/ui/missing.js", "/ui/..%2Fapp.py", "/ui/routes.py", "/ui/samples/nothing.png"]
)
def test_unknown_files_are_a_json_404(default_client: TestClient, path: str) -> None:
    answer = default_client.get(path)
    assert answer.status_code == 404
    if answer.headers["content-type"].startswith("application/json"):
        assert answer.json()["detail"]


def test_the_samples_are_listed_and_served_as_pictures(default_client: TestClient) -> None:
    listed = default_client.get("/ui/samples").json()["data"]
    names = [s["name"] for s in listed]
    assert names[:2] == ["china.jpg", "flower.jpg"] and len(names) == 12
    for sample in listed:
        answer = default_client.get(sample["url"])
        assert answer.status_code == 200 and answer.headers["content-type"] == sample["media_type"]
        picture = Image.open(io.BytesIO(answer.content))
        if sample["channels"] == 1:
            assert picture.format == "PNG" and picture.size == (32, 32) and picture.mode == "L"
        else:
            assert picture.format == "JPEG" and picture.size == (640, 427) and picture.mode == "RGB"


def test_an_unknown_sample_names_the_closest(default_client: TestClient) -> None:
    answer = default_client.get("/ui/samples/chinaa.jpg")
    assert answer.status_code == 404
    body = answer.json()
    assert "GET /ui/samples" in body["detail"] and body["closest"][0] == "china.jpg"


def test_a_sample_uploads_to_the_image_store_as_is(default_client: TestClient) -> None:
    data = default_client.get("/ui/samples/digit-3-label3.png").content
    stored = default_client.post("/v1/images", files={"image": ("d.png", data, "image/png")}).json()
    predicted = default_client.post(
        "/v1/models/digits/predict", params={"image_id": stored["image_id"], "top_k": 1}
    )
    assert predicted.json()["predictions"][0][0]["label"] == "3"


def test_the_portal_stays_out_of_the_api_schema(default_client: TestClient) -> None:
    paths = default_client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]


def test_the_page_opens_without_an_api_key_while_the_api_needs_one(tiny_config: Path) -> None:
    with TestClient(
        create_app(Settings(models=tiny_config, device="cpu", api_key="s3cret"))
    ) as client:
        assert client.get("/ui").status_code == 200
        assert client.get("/ui/app.js").status_code == 200
        assert client.get("/ui/samples").status_code == 200
        assert client.get("/v1/models").status_code == 401


def test_tile_geometry_in_the_page_matches_the_renderer() -> None:
    """maps.js finds tiles in the server's panel with the renderer's constants."""
    script = (STATIC / "maps.js").read_text()
    found = dict(re.findall(r"(MARGIN|TITLE_HEIGHT|GAP): (\d+)", script))
    assert found == {
        "MARGIN": str(render._MARGIN),
        "TITLE_HEIGHT": str(render._TITLE_HEIGHT),
        "GAP": str(render._GAP),
    }


def test_the_page_ships_in_the_package() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["service"]
    for path in STATIC.iterdir():
        relative = path.relative_to(ROOT / "service").as_posix()
        assert any(fnmatch(relative, pattern) for pattern in package_data), relative
