"""`lrp` over HTTP on the served resnet18 (its blocks canonized as zennit's ResNetCanonizer)."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from tests.helpers import files, load_npy

URL = "/v1/models/resnet18/attributions"


def test_lrp_on_resnet18_answers_each_rule(app_client: TestClient, china_png: bytes) -> None:
    maps = {}
    for rule in ("epsilon-plus-flat", "epsilon-gamma-box"):
        params = {"method": "lrp", "rule": rule, "target": "3"}
        answer = app_client.post(URL, params={**params, "format": "npy"}, files=files(china_png))
        assert answer.status_code == 200, answer.text
        maps[rule] = load_npy(answer.content)
        assert maps[rule].shape == (1, 3, 64, 64) and np.isfinite(maps[rule]).all()
        assert np.abs(maps[rule]).max() > 0
        body = app_client.post(URL, params={**params, "format": "json"}, files=files(china_png))
        assert body.json()["parameters"]["rule"] == rule
    # the flat rule spreads the first layer's relevance evenly over its receptive field
    assert not np.allclose(maps["epsilon-plus-flat"], maps["epsilon-gamma-box"])
