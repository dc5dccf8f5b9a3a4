"""`hf:` directories of segmentation and detection models: the task from config.json's
`architectures` or the entry, the matching Auto class, and clear start-up errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_registry.config import load_config
from model_registry.errors import ConfigError
from model_registry.registry import load_model
from model_registry.sources.hf_heads import corner_boxes, task_from_config
from tests.hf_dense_models import write_segformer
from tests.source_models import write_hf_vit

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def segformer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_segformer(tmp_path_factory.mktemp("segformer") / "seg")


def _config(folder: Path, body: str) -> Path:
    path = folder / "models.toml"
    path.write_text(f'[[models]]\nname = "m"\n{body}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("architectures", "task"),
    [
        (["SegformerForSemanticSegmentation"], "segmentation"),
        (["DetrForObjectDetection"], "detection"),
        (["ViTForImageClassification"], "classification"),
        (["ViTModel"], None),
        (None, None),
    ],
)
def test_task_from_config(architectures, task) -> None:
    assert task_from_config({"architectures": architectures}) == task


def test_corner_boxes_scale_to_the_input() -> None:
    boxes = torch.tensor([[0.5, 0.25, 0.2, 0.5]])
    torch.testing.assert_close(
        corner_boxes(boxes, (100, 200)), torch.tensor([[80.0, 0.0, 120.0, 50.0]])
    )


def test_a_segformer_directory_loads_as_a_segmenter(segformer_dir: Path, tmp_path: Path) -> None:
    (spec,) = load_config(_config(tmp_path, f'architecture = "hf:{segformer_dir}"'))
    assert (spec.task, spec.input_size, spec.num_classes) == ("segmentation", (64, 64), 5)
    model = load_model(spec, CPU)
    with torch.inference_mode():
        out = model.module(torch.zeros(1, 3, 64, 48))
    assert set(out) == {"out"} and out["out"].shape == (1, 5, 64, 48)  # at the input size
    names = [name for name, _ in model.module.named_modules() if name]
    assert [layer.name for layer in model.catalog] == names


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('task = "detection"', "field 'task': .* is a segmentation model, not detection"),
        ("options = { detection_threshold = 1.5 }", "field 'options': detection_threshold"),
    ],
)
def test_bad_entries_end_start_up(segformer_dir: Path, tmp_path: Path, body, message) -> None:
    path = _config(tmp_path, f'architecture = "hf:{segformer_dir}"\n{body}')
    with pytest.raises(ConfigError, match=message):
        load_model(load_config(path)[0], CPU)


def test_a_classifier_directory_named_a_segmenter_is_refused(tmp_path: Path) -> None:
    folder = write_hf_vit(tmp_path / "vit")
    path = _config(tmp_path, f'architecture = "hf:{folder}"\ntask = "segmentation"')
    with pytest.raises(ConfigError, match="is a classification model, not segmentation"):
        load_config(path)
