"""GET /v1/methods also lists the evaluation metrics (the portal's Trust tab picks from it):
every metric of the registry, with its family, reference, direction and defaults."""

from __future__ import annotations

from typing import Any

from service.engine.evaluation.metrics.base import FAMILIES
from service.engine.evaluation.metrics.registry import METRICS, metric_names


def test_methods_listing_names_every_metric(app_client: Any) -> None:
    body = app_client.get("/v1/methods").json()
    listed = body["metrics"]
    assert (
        [m["name"] for m in listed]
        == list(metric_names())
        == sorted(METRICS, key=lambda n: (FAMILIES.index(METRICS[n].family), n))
    )
    by_name = {m["name"]: m for m in listed}
    assert by_name["deletion"]["higher_is_better"] is False
    assert by_name["insertion"]["higher_is_better"] is True
    assert by_name["pointing-game"]["family"] == "localisation"
    assert by_name["pointing-game"]["needs"] == ["masks"]
    assert by_name["sparseness"]["reference"].startswith("Quantus")
    assert by_name["road-combined"]["parameters"]["road_percentiles"] == list(range(10, 100, 10))
    assert by_name["deletion"]["parameters"] == {"steps": 32}
    # The methods themselves are listed as before.
    assert body["count"] == len(body["data"]) and "gradcam" in {m["name"] for m in body["data"]}
