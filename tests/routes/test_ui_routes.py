"""The portal's own routes (colormaps, reference digits) and the constants its scripts mirror."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from service.engine import charts, upload_view
from service.engine.render import colormap_lut

STATIC = Path(__file__).resolve().parents[2] / "service" / "static" / "ui"


def test_a_colormap_is_the_renderers_lookup_table(tiny_client: TestClient) -> None:
    answer = tiny_client.get("/ui/colormaps/magma")
    assert answer.status_code == 200
    lut = np.array(answer.json()["lut"], dtype=np.uint8)
    assert lut.shape == (256, 3) and (lut == colormap_lut("magma")).all()
    wrong = tiny_client.get("/ui/colormaps/nope")
    assert wrong.status_code == 422 and wrong.json()["field"] == "name"
    assert "viridis" in wrong.json()["choices"]


def test_reference_digits_carry_their_labels_and_are_served(tiny_client: TestClient) -> None:
    data = tiny_client.get("/ui/references").json()["data"]
    assert len(data) == 40
    counts: dict[str, int] = {}
    for item in data:
        assert item["name"].endswith(f"label{item['label']}.png")
        counts[item["label"]] = counts.get(item["label"], 0) + 1
    assert len(counts) == 10 and min(counts.values()) >= 2
    picture = tiny_client.get(data[0]["url"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert len(tiny_client.get("/ui/samples").json()["data"]) == 12  # samples unchanged


def test_the_scripts_mirror_the_renderers_geometry() -> None:
    maps = (STATIC / "maps.js").read_text()
    found = dict(re.findall(r"(BAR_CHART_WIDTH): (\d+)", maps))
    assert found == {"BAR_CHART_WIDTH": str(charts.BAR_CHART_WIDTH)}
    classes = (STATIC / "classes.js").read_text()
    panel = dict(re.findall(r"\b(MIN|MAX): (\d+)", classes))
    assert panel == {"MIN": str(upload_view.MIN_DISPLAY), "MAX": str(upload_view.MAX_DISPLAY)}
