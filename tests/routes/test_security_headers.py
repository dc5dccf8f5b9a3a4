"""Headers on every answer, CORS that lets a browser read what the API tells it, and /docs
and /redoc that work with no outside network: every asset they name is served here."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.helpers import digits_entry, files

ORIGIN = "https://portal.example"
KEY = "s3cret-key-for-the-docs-test"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The digits model alone, a key required, CORS open to one origin, a small body limit."""
    models = tmp_path_factory.mktemp("headers") / "models.toml"
    models.write_text(digits_entry())
    settings = Settings(
        models=models, device="cpu", api_key=KEY, cors_origins=[ORIGIN], max_body_bytes=4096
    )
    with TestClient(create_app(settings)) as client:
        yield client


AUTH = {"Authorization": f"Bearer {KEY}"}


def _secured(answer) -> None:
    assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url
    assert answer.headers["referrer-policy"] == "no-referrer", answer.request.url


def test_every_answer_carries_nosniff_and_a_referrer_policy(
    client: TestClient, digit_pngs: list[bytes]
) -> None:
    predict = "/v1/models/digits/predict"
    answers = [
        (200, client.get("/v1/models", headers=AUTH)),
        (200, client.post(predict, headers=AUTH, files=files(digit_pngs[0]))),
        (401, client.get("/v1/models")),  # made by the auth middleware
        (404, client.get("/v1/models/nope", headers=AUTH)),
        (413, client.post(predict, headers=AUTH, content=b"x" * 5000)),  # by the body limit
        (415, client.post(predict, headers=AUTH, files=files(b"not a png"))),
        (422, client.post(f"{predict}?top_k=-1", headers=AUTH, files=files(digit_pngs[0]))),
    ]
    for status, answer in answers:
        assert answer.status_code == status, (status, answer.text)
        _secured(answer)
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/ui"):
        _secured(client.get(path, headers=AUTH))


def test_cors_exposes_location_retry_after_and_the_request_id(client: TestClient) -> None:
    answer = client.get("/v1/models", headers={**AUTH, "Origin": ORIGIN})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    exposed = {
        h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")
    }
    assert {"location", "retry-after", "x-request-id"} <= set(exposed)
    _secured(answer)


def _local_assets(page: str) -> list[str]:
    """Every URL a page loads (src, href, url: and spec-url), all of which must be ours."""
    urls = re.findall(r'(?:src|href|spec-url)="([^"]+)"', page)
    urls += re.findall(r"url: '([^']+)'", page)
    return urls


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"text/javascript", "text/css", "image/png", "application/json"}),
        ("/redoc", {"text/javascript", "image/png", "application/json"}),
    ],
)
def test_docs_pages_load_only_assets_served_here_without_a_key(
    client: TestClient, page: str, expected: set[str]
) -> None:
    answer = client.get(page)  # no key: the docs are readable before one is handed out
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    html = answer.text
    assert "//" not in html  # no http://, https:// or protocol-relative URL
    urls = _local_assets(html)
    assert urls and all(url.startswith("/") for url in urls), urls
    served = set()
    for url in urls:
        asset = client.get(url, headers=AUTH if url == "/openapi.json" else None)
        assert asset.status_code == 200, url
        assert int(asset.headers["content-length"]) > 1000, url
        served.add(asset.headers["content-type"].split(";")[0])
        _secured(asset)
    assert served == expected


def test_asset_names_come_from_an_allow_list(client: TestClient) -> None:
    for name in ("../../settings.py", "nope.js", "%2e%2e%2fapp.py"):
        answer = client.get(f"/docs/assets/{name}", headers=AUTH)  # "../" leaves /docs
        assert answer.status_code == 404, name
        _secured(answer)
    assert client.get("/docs/oauth2-redirect").status_code == 200
