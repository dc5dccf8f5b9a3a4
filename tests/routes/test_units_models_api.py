"""Dataset exemplars over HTTP on a torchvision CNN (seeded weights saved by the test) and a
timm ViT (token layer read as a map), against a brute-force top-k over a folder the test
writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from service.app import create_app
from service.engine.exemplars.plan import plan_exemplars
from service.settings import Settings
from tests.dataset_support import write_folder
from tests.engine.test_exemplars import brute_force
from tests.helpers import digits_entry, resnet18_entry, seeded_resnet, toml_table
from tests.routes.test_units_api import run_job
from tests.source_models import TINY_VIT, _timm


def write_cnn_and_vit(folder: Path) -> Path:
    """A models file serving `digits`, `tv` (torchvision resnet18 at 64 px, 4 classes,
    seeded weights in a file next to it), `tvit` (a tiny timm ViT, 4 x 4 tokens) and the
    folder `noise` (three classes of four pictures); returns its path."""
    write_folder(folder / "noise", ("red", "green", "blue"), broken=False)
    state = {k: v.contiguous() for k, v in seeded_resnet(3, 4).state_dict().items()}
    save_file(state, str(folder / "resnet.safetensors"))
    config = folder / "models.toml"
    config.write_text(
        digits_entry()
        + resnet18_entry("tv", 4, size=64, weights="resnet.safetensors")
        + _timm("tvit", "vit_tiny_patch16_224", TINY_VIT)
        + toml_table("datasets", name="noise", path="noise")
    )
    return config


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = write_cnn_and_vit(tmp_path_factory.mktemp("units-models"))
    with TestClient(create_app(Settings(models=config, device="cpu", torch_threads=1))) as client:
        yield client


@pytest.mark.parametrize(
    ("model", "layer", "score", "side"),
    [
        ("tv", "layer2", "max", 8),
        ("tv", "layer3.0.conv1", "mean", 4),
        ("tvit", "blocks.1", "max", 4),
    ],
)
def test_exemplars_equal_a_brute_force_top_k(
    api: TestClient, model: str, layer: str, score: str, side: int
) -> None:
    url = f"/v1/models/{model}/datasets/noise/units?layer={layer}&channels=0-5&k=4&score={score}"
    result = run_job(api, url).json()
    assert (result["layer"], result["score"], result["images"]) == (layer, score, 12)
    loaded = api.app.state.registry.get(model)
    dataset = api.app.state.datasets.get("noise")
    plan = plan_exemplars(
        loaded, dataset, layer=layer, channels="0-5", k=4, score=score, limit=None, seed=0
    )
    expected = brute_force(loaded, dataset, plan)
    units = result["units"]
    assert [u["channel"] for u in units] == list(range(6))
    indices = np.array([[t["index"] for t in u["top"]] for u in units])
    values = np.array([[t["value"] for t in u["top"]] for u in units])
    positions = np.array([[t["position"] for t in u["top"]] for u in units])
    np.testing.assert_array_equal(indices, expected["indices"])
    np.testing.assert_allclose(values, expected["values"], rtol=0, atol=1e-5)
    flat = positions[..., 0] * side + positions[..., 1]  # the argmax, also when ranked by mean
    np.testing.assert_array_equal(flat, expected["positions"])
    assert not any(m._forward_hooks for m in loaded.module.modules())
    assert all(p.grad is None for p in loaded.module.parameters())
    assert torch.is_grad_enabled()


def test_a_vit_token_box_is_its_patch(api: TestClient) -> None:
    """tvit is 32 x 32 in 8 x 8 patches: the token at (y, x) sees exactly its patch."""
    result = run_job(api, "/v1/models/tvit/datasets/noise/units?layer=blocks.0&channels=2&k=3")
    for top in result.json()["units"][0]["top"]:
        y, x = top["position"]
        assert top["box"] == [8 * x, 8 * y, 8 * x + 8, 8 * y + 8]
