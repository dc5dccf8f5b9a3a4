"""POST /v1/models/{model}/datasets/{dataset}/concepts as a job: the concepts' exemplars
equal a brute-force ranking of the same factorization, and the memory cap is a 422."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from model_registry.datasets import DigitsDataset
from service.engine.concepts.dataset import sample_indices
from service.engine.concepts.factorize import factorize, layer_maps, plan_concepts
from tests.helpers import error_body, run_job
from tests.tiny_models import model_batch

URL = "/v1/models/{}/datasets/{}/concepts"


def test_exemplars_rank_the_factorization_of_the_sample(api: TestClient, digits) -> None:
    query = "?layer=relu3&k=3&exemplars=4&limit=40&seed=2"
    _, result = run_job(api, URL.format("digits", "digits") + query)
    dataset = DigitsDataset()
    indices = sample_indices(dataset, 40, 2)
    assert result["indices"] == indices.tolist() and result["images"] == 40
    pictures = [Image.open(io.BytesIO(dataset.read(int(i)))) for i in indices]
    plan = plan_concepts(digits, layer="relu3", k=3, top=3)
    maps = np.concatenate(
        [layer_maps(digits, model_batch(digits, pictures[s : s + 32]), plan) for s in (0, 32)]
    )
    strength = factorize(maps, 3).strength
    assert result["classifier"] == "fc"
    for k, concept in enumerate(result["concepts"]):
        expected = np.argsort(-strength[:, k], kind="stable")[:4]
        assert [e["index"] for e in concept["exemplars"]] == indices[expected].tolist()
        np.testing.assert_allclose(
            [e["strength"] for e in concept["exemplars"]], strength[expected, k], rtol=1e-3
        )
        assert all(e["label"] == str(dataset.label(e["index"])) for e in concept["exemplars"])
        assert len(concept["classes"]) == 3


def test_maps_beyond_the_cap_are_refused_naming_it(api: TestClient) -> None:
    answer = api.post(URL.format("tinyres", "digits") + "?layer=conv1&limit=1500")
    body = error_body(answer, 422, "limit")
    assert "256 MiB" in body["detail"] and body["valid_range"] == [2, 1024]


def test_an_unknown_dataset_is_404_with_the_names(api: TestClient) -> None:
    body = error_body(api.post(URL.format("digits", "nope")), 404, "dataset")
    assert body["choices"] == ["digits"]
