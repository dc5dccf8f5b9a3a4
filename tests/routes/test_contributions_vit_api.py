"""Contributions and unit= over HTTP on a timm ViT, whose token layers read as maps."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.helpers import error_body, load_npy
from tests.source_models import TINY_VIT, _timm

URL = "/v1/models/tvit"
PICTURE = "image=dataset:digits/5"


@pytest.fixture(scope="module")
def vit_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("vit")
    path = folder / "models.toml"
    path.write_text(_timm("tvit", "vit_tiny_patch16_224", TINY_VIT), encoding="utf-8")
    with TestClient(create_app(Settings(models=path, device="cpu", torch_threads=1))) as client:
        yield client


def test_a_block_has_one_contribution_per_embedding_channel(vit_api: TestClient) -> None:
    answer = vit_api.post(f"{URL}/contributions?layer=blocks.1&target=2&format=npy&{PICTURE}")
    assert answer.status_code == 200, answer.text
    values = load_npy(answer.content)
    assert values.shape == (1, 32) and np.isfinite(values).all()
    body = vit_api.post(f"{URL}/contributions?layer=blocks.1&target=2&top=4&{PICTURE}").json()
    assert [c["channel"] for c in body["channels"]] == list(np.argsort(-values[0])[:4])


@pytest.mark.parametrize(
    "route", ["cam?method=gradcam&layer=blocks.0", "attributions?method=integrated-gradients"]
)
def test_a_token_unit_is_explained(vit_api: TestClient, route: str) -> None:
    answer = vit_api.post(f"{URL}/{route}&unit=blocks.1:3@1,2&format=json&{PICTURE}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["targets"][0][0]["unit"] == "blocks.1:3@1,2"


def test_a_unit_outside_the_patch_grid_and_unmatched_classes_are_refused(vit_api) -> None:
    body = error_body(vit_api.post(f"{URL}/cam?unit=blocks.1:3@4,0&{PICTURE}"), 422, "unit")
    assert body["valid_range"] == [[0, 3], [0, 3]]
    answer = vit_api.post(f"{URL}/datasets/digits/contributions?layer=blocks.1")
    error_body(answer, 422, "dataset")
