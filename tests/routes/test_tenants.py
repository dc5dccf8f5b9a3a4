"""Tenants through the HTTP interface (in-process stores): each key's images and cached layers
are its own, another tenant's id answers the same 404 as an unknown one, the admin sees all,
the scheme of `Authorization: Bearer` is case-insensitive, and /metrics takes a scrape token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.helpers import files, load_npy

ALICE = {"Authorization": "Bearer alice-key-1"}
BOB = {"Authorization": "Bearer bob-key-2"}
ROOT = {"Authorization": "Bearer root-key-3"}
FM = "/v1/models/tiny-resnet/feature-maps"


@pytest.fixture(scope="module")
def api(tiny_config: Path) -> Iterator[TestClient]:
    settings = Settings(
        models=tiny_config,
        device="cpu",
        api_keys="alice:alice-key-1, bob:bob-key-2,root:root-key-3",
        admin_tenants="root",
        metrics_token="scrape-token",
    )
    with TestClient(create_app(settings)) as client:
        yield client


def upload(api: TestClient, data: bytes, key: dict[str, str]) -> str:
    answer = api.post("/v1/images", files=files(data), headers=key)
    assert answer.status_code == 200, answer.text
    return answer.json()["image_id"]


def test_an_image_is_seen_by_its_tenant_and_the_admin_only(
    api: TestClient, tiny_inputs: list[bytes]
) -> None:
    image_id = upload(api, tiny_inputs[0], ALICE)
    query = f"{FM}?layers=layer1&fmt=npy&image_id={image_id}"
    mine = api.post(query, headers=ALICE)
    assert mine.status_code == 200
    direct = api.post(f"{FM}?layers=layer1&fmt=npy", files=files(tiny_inputs[0]), headers=BOB)
    np.testing.assert_array_equal(load_npy(mine.content), load_npy(direct.content))
    theirs = api.post(query, headers=BOB)
    unknown = api.post(f"{FM}?layers=layer1&fmt=npy&image_id={'0' * 64}", headers=BOB)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["detail"].replace(image_id, "X") == unknown.json()["detail"].replace(
        "0" * 64, "X"
    )  # the same answer as for an id that never existed: nothing leaks
    admin = api.post(query, headers=ROOT)
    assert admin.status_code == 200 and admin.content == mine.content


def test_the_same_picture_gets_another_id_per_tenant_and_the_same_one_again(
    api: TestClient, tiny_inputs: list[bytes]
) -> None:
    alice, bob = upload(api, tiny_inputs[1], ALICE), upload(api, tiny_inputs[1], BOB)
    assert re.fullmatch("[0-9a-f]{64}", alice) and re.fullmatch("[0-9a-f]{64}", bob)
    assert alice != bob
    assert upload(api, tiny_inputs[1], ALICE) == alice  # deduplicated within the tenant


def test_cached_layers_are_not_shared_between_tenants(
    api: TestClient, tiny_inputs: list[bytes]
) -> None:
    cache = api.app.state.activations
    query = f"{FM}?layers=layer2&fmt=npy"
    first = api.post(query, files=files(tiny_inputs[1]), headers=ALICE)
    hits, misses = cache.hits, cache.misses
    other = api.post(query, files=files(tiny_inputs[1]), headers=BOB)
    assert (cache.hits, cache.misses) == (hits, misses + 1)  # bob computed his own
    again = api.post(query, files=files(tiny_inputs[1]), headers=ALICE)
    assert (cache.hits, cache.misses) == (hits + 1, misses + 1)  # alice's own entry
    assert first.content == other.content == again.content


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(api: TestClient, scheme: str) -> None:
    answer = api.get("/v1/models", headers={"Authorization": f"{scheme} bob-key-2"})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic bob-key-2",
        "bob-key-2",
        "Bearer bob-key-",
        "Bearer scrape-token",
    ],
)
def test_a_wrong_or_missing_key_is_401(api: TestClient, header: str) -> None:
    answer = api.get("/v1/models", headers={"Authorization": header} if header else {})
    assert answer.status_code == 401 and answer.json()["field"] == "authorization"
    assert answer.headers["www-authenticate"] == "Bearer"


def test_metrics_open_to_the_scrape_token_and_tenant_keys(api: TestClient) -> None:
    scraped = api.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert scraped.status_code == 200 and "layerscope" in scraped.text
    assert api.get("/metrics", headers={"Authorization": "bearer scrape-token"}).status_code == 200
    assert api.get("/metrics", headers=BOB).status_code == 200
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics", headers={"Authorization": "Bearer scrape-tokenx"}).status_code == 401


def test_a_tenant_over_its_byte_limit_loses_its_own_oldest_upload_only(
    tiny_config: Path, tiny_inputs: list[bytes]
) -> None:
    small, other = tiny_inputs[0], tiny_inputs[1]
    limit = len(small) + len(other) - 1  # room for one of the two, not both
    settings = Settings(
        models=tiny_config,
        device="cpu",
        api_keys="alice:alice-key-1,bob:bob-key-2",
        tenant_max_image_bytes=limit,
    )
    assert limit >= 1024, "the tiny inputs are expected to be over 512 bytes each"
    with TestClient(create_app(settings)) as client:
        bobs = upload(client, small, BOB)
        first = upload(client, small, ALICE)
        second = upload(client, other, ALICE)  # over alice's limit: her oldest goes
        query = f"{FM}?layers=layer1&fmt=npy&image_id="
        assert client.post(query + first, headers=ALICE).status_code == 404
        assert client.post(query + second, headers=ALICE).status_code == 200
        assert client.post(query + bobs, headers=BOB).status_code == 200  # bob keeps his
        assert client.app.state.images.owned_bytes("alice") == len(other)
        huge = np.random.default_rng(0).integers(0, 256, limit + 1, dtype=np.uint8).tobytes()
        too_big = client.post("/v1/images", files=files(small + huge), headers=ALICE)
        body = too_big.json()
        assert too_big.status_code == 413 and body["field"] == "image"
        assert body["tenant_max_image_bytes"] == limit and str(limit) in body["detail"]
