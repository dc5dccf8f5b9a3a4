"""A task per model: torchvision segmentation and detection builders load, and say so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_registry.config import load_config
from model_registry.errors import ConfigError
from model_registry.registry import LoadedModel
from tests.dense_models import DET_LABELS, SEG_LABELS, seeded_detector, seeded_segmenter


def test_tasks_come_from_the_torchvision_builder(dense_models: dict[str, LoadedModel]) -> None:
    assert dense_models["seg"].spec.task == "segmentation"
    assert dense_models["det"].spec.task == "detection"
    # Detection models normalize inside: the service feeds them [0, 1] pixels.
    assert dense_models["det"].spec.mean == (0.0, 0.0, 0.0)
    assert dense_models["det"].spec.std == (1.0, 1.0, 1.0)


def test_loaded_weights_are_the_files(dense_models: dict[str, LoadedModel]) -> None:
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours = dense_models["seg"].module(x)["out"]
        theirs = seeded_segmenter()(x)["out"]
        boxes = dense_models["det"].module(x)[0]
        reference = seeded_detector()(x)[0]
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(boxes["boxes"], reference["boxes"])
    assert dense_models["seg"].labels == SEG_LABELS
    assert dense_models["det"].labels == DET_LABELS


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('architecture = "torchvision:fcn_resnet50"\ntask = "detection"', "is a segmentation"),
        ('architecture = "torchvision:resnet18"\ntask = "boxes"', "field 'task'"),
        ('architecture = "torchvision:resnet18"\ntask = "detection"', "is a classification"),
    ],
)
def test_task_field_errors(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        f'[[models]]\nname = "m"\n{entry}\ninput_size = [64, 64]\nmean = [0.5]\nstd = [0.5]\n'
        "num_classes = 3\n"
    )
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_task_field_sets_python_models(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(
        "import torch\n\ndef make():\n    return torch.nn.Conv2d(3, 4, 1)\n"
    )
    (tmp_path / "models.toml").write_text(
        '[[models]]\nname = "m"\narchitecture = "python:net.py:make"\ntask = "segmentation"\n'
        "input_size = [16, 16]\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\nnum_classes = 4\n"
    )
    (spec,) = load_config(tmp_path / "models.toml")
    assert spec.task == "segmentation"


def test_model_info_reports_the_task(dense_client) -> None:
    body = dense_client.get("/v1/models/det").json()
    assert body["task"] == "detection"
    assert dense_client.get("/v1/models/seg").json()["task"] == "segmentation"
