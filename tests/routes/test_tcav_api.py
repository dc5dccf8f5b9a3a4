"""POST /v1/models/{model}/tcav as a job over HTTP, and its bad input (runs < 2, unknown
concepts, a bad target) answered before any job exists."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers import error_body, run_job

IMAGES = "image=dataset:digits/0,dataset:digits/10,dataset:digits/20"
URL = "/v1/models/digits/tcav?" + IMAGES


def test_a_tcav_job_scores_each_layer_and_concept(api: TestClient) -> None:
    query = "&layers=relu2,relu3&concepts=digits/0,digits/7&random=digits&target=0&runs=3"
    _, result = run_job(api, URL + query + "&samples=6&seed=4")
    assert result["target"] == 0 and result["runs"] == 3 and result["samples"] == 6
    assert result["inputs"] == 3 and result["alpha"] == 0.05
    pairs = [(s["layer"], s["concept"]) for s in result["scores"]]
    assert sorted(pairs) == sorted(
        (layer, concept) for layer in ("relu2", "relu3") for concept in ("digits/0", "digits/7")
    )
    for score in result["scores"]:
        assert 0 <= score["score_mean"] <= 1 and score["score_std"] >= 0
        assert score["significant"] == (score["p_value"] is not None and score["p_value"] < 0.05)
    _, again = run_job(api, URL + query + "&samples=6&seed=4")
    assert again["scores"] == result["scores"]  # same seed, same scores


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("&concepts=digits/0&random=digits&target=0&runs=1", 422, "runs"),
        ("&concepts=stripes&random=digits&target=0", 404, "concepts"),
        ("&concepts=digits/x&random=digits&target=0", 404, "concepts"),
        ("&concepts=digits/0&random=noise&target=0", 404, "random"),
        ("&concepts=digits/0&random=digits&target=12", 422, "target"),
        ("&concepts=digits/0&random=digits&target=0&layers=nope", 404, "layers"),
    ],
)
def test_bad_input_is_refused_before_a_job(api: TestClient, query, status, field) -> None:
    body = error_body(api.post(URL + query), status, field)
    if query.startswith("&concepts=stripes"):
        assert "digits" in body["choices"]
