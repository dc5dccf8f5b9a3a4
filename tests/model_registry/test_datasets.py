"""Datasets: the built-in digits as the digits model sees them, folders from the models file,
dataset references, class-name matching, and start-up failures that name the dataset."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_registry.builtin.digits import to_input
from model_registry.config import load_datasets
from model_registry.datasets import DatasetCatalog, DigitsDataset, match_classes
from model_registry.errors import ConfigError, InvalidInput, NotFound
from service import cli
from tests.dataset_support import PER_CLASS, PET_CLASSES, write_folder, write_models


def test_digits_are_the_pictures_the_digits_model_is_fed() -> None:
    from sklearn.datasets import load_digits

    digits = DigitsDataset()
    raw = load_digits()
    assert len(digits) == 1797 and digits.classes == tuple("0123456789")
    for index in (0, 17, 1796):
        picture = Image.open(io.BytesIO(digits.read(index)))
        assert picture.size == (32, 32) and picture.mode == "L"
        assert digits.label(index) == raw.target[index]
        # The 8x8 digit through the model's own preprocessing gives the same input.
        eight = Image.fromarray(np.round(raw.images[index] * 255 / 16).astype(np.uint8))
        assert torch.equal(to_input(picture), to_input(eight))


def test_folders_are_listed_as_image_folders(tmp_path: Path) -> None:
    config = write_models(tmp_path)
    pets, shapes = load_datasets(config)
    assert (pets.name, pets.classes) == ("pets", PET_CLASSES)
    assert len(pets) == len(PET_CLASSES) * PER_CLASS + 1  # the broken .png is listed
    assert "notes.txt" not in " ".join(pets.files)
    assert [pets.label(i) for i in range(len(pets))] == sorted(pets.labels)
    assert pets.files[PER_CLASS] == "cat/99-broken.png"
    assert shapes.classes == ("round", "square") and len(shapes) == 2 * PER_CLASS


def test_masks_are_read_by_relative_name(tmp_path: Path) -> None:
    write_folder(tmp_path / "ok", ("a", "b"), broken=False)
    (tmp_path / "m" / "a").mkdir(parents=True)
    (tmp_path / "m" / "a" / "00.png").write_bytes(b"mask of a/00")
    config = tmp_path / "models.toml"
    config.write_text('[[datasets]]\nname = "val"\npath = "ok"\nmasks = "m"\n')
    (found,) = load_datasets(config)
    assert found.masks == tmp_path / "m"
    assert found.read_mask(0) == b"mask of a/00"
    assert found.read_mask(1) is None and found.read_mask(PER_CLASS) is None
    assert DigitsDataset().read_mask(5) == DigitsDataset().read(5)  # the digit's strokes


@pytest.mark.parametrize(
    ("table", "pattern"),
    [
        ('name = "val"\npath = "absent"', r"dataset 'val': field 'path': folder .*absent.* exist"),
        ('name = "val"\npath = "empty"', r"dataset 'val': field 'path': .*no class subfolders"),
        ('name = "val"\npath = "hollow"', r"dataset 'val': field 'path': .*no pictures"),
        ('name = "digits"\npath = "ok"', r"dataset 'digits': field 'name': .*built-in"),
        ('name = "val"', r"dataset 'val': field 'path': Field required"),
        ('name = "v a l"\npath = "ok"', r"dataset 'v a l': field 'name'"),
        ('name = "val"\npath = "ok"\nroot = "x"', r"dataset 'val': field 'root'"),
        ('name = "val"\npath = "ok"\nmasks = "absent"', r"dataset 'val': field 'masks': .*absent"),
    ],
)
def test_bad_dataset_tables_fail_in_one_line(tmp_path: Path, table: str, pattern: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "hollow" / "a").mkdir(parents=True)
    write_folder(tmp_path / "ok", ("a", "b"), broken=False)
    config = tmp_path / "models.toml"
    config.write_text(f"[[datasets]]\n{table}\n")
    with pytest.raises(ConfigError, match=pattern) as caught:
        load_datasets(config)
    assert "\n" not in str(caught.value) and str(config) in str(caught.value)


def test_a_missing_folder_stops_start_up_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_models(tmp_path)
    config.write_text(config.read_text() + '\n[[datasets]]\nname = "gone"\npath = "nowhere"\n')
    monkeypatch.setenv("LAYERSCOPE_MODELS", str(config))
    assert cli.main(["serve"]) == cli.START_UP_FAILED
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "dataset 'gone'" in lines[0] and "nowhere" in lines[0]


def test_references_name_a_dataset_and_an_index(tmp_path: Path) -> None:
    catalog = DatasetCatalog(load_datasets(write_models(tmp_path)))
    assert catalog.names() == ["digits", "pets", "shapes"]
    dataset, index = catalog.resolve("dataset:pets/5")
    assert (dataset.name, index, dataset.label(index)) == ("pets", 5, 1)
    assert catalog.read("dataset:pets/5") == (tmp_path / "pets" / dataset.files[5]).read_bytes()
    with pytest.raises(NotFound) as unknown:
        catalog.resolve("dataset:nope/1")
    assert unknown.value.extra["choices"] == ["digits", "pets", "shapes"]
    for bad in ("dataset:pets/13", "dataset:pets/-1", "dataset:pets", "dataset:/1", "pets/1"):
        with pytest.raises(InvalidInput):
            catalog.resolve(bad)


@pytest.mark.parametrize(
    ("classes", "labels", "expected"),
    [
        (["0", "1"], ["0", "1", "2"], (0, 1)),
        (["cat", "dog-breed"], ["Dog Breed", "CAT"], (1, 0)),
        (["golden_retriever"], ["tench", "golden retriever"], (1,)),
        (["cat", "lynx"], ["cat", "dog"], None),  # one name maps to nothing
        (["cat", "Cat"], ["cat"], None),  # two classes on one label
    ],
)
def test_class_names_match_labels(
    classes: list[str], labels: list[str], expected: tuple[int, ...] | None
) -> None:
    assert match_classes(classes, labels) == expected
