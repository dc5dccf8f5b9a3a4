"""The models TOML: good entries load, bad ones stop start-up naming entry and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_registry.config import load_config
from model_registry.errors import ConfigError
from model_registry.loading import build_model
from tests.helpers import seeded_resnet, write_resnet_config

ENTRY = """
[[models]]
name = "{name}"
architecture = "{architecture}"
{weights}
input_size = [64, 64]
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
num_classes = {num_classes}
"""


def _entry(
    name: str,
    *,
    architecture: str = "torchvision:resnet18",
    weights: str | None = None,
    num_classes: int = 10,
) -> str:
    """One [[models]] entry of a 64x64 model (no `weights` line when None)."""
    line = f'weights = "{weights}"' if weights is not None else ""
    return ENTRY.format(name=name, architecture=architecture, weights=line, num_classes=num_classes)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def _build_fails(tmp_path: Path, entry: str, pattern: str) -> None:
    """The entry loads, but building its model stops with a `ConfigError` matching `pattern`."""
    (spec,) = load_config(_write(tmp_path, entry))
    with pytest.raises(ConfigError, match=pattern):
        build_model(spec)


def test_config_resolves_relative_paths_and_labels(tmp_path: Path) -> None:
    config = write_resnet_config(tmp_path)
    (spec,) = load_config(config)
    assert spec.name == "tiny-resnet"
    assert Path(spec.weights).is_absolute() and Path(spec.weights).parent == tmp_path
    assert spec.input_size == (64, 64) and spec.in_channels == 3
    assert spec.labels[3] == "three"


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_files_load_exactly(tmp_path: Path, suffix: str) -> None:
    (spec,) = load_config(write_resnet_config(tmp_path, suffix=suffix))
    built = build_model(spec)
    expected = seeded_resnet(7).state_dict()
    for key, value in built.module.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert built.pretrained is True
    assert not built.module.training
    assert not any(p.requires_grad for p in built.module.parameters())


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    weights = tmp_path / "evil.pt"
    torch.save({"model": seeded_resnet(7)}, weights)  # a whole module: needs unpickling code
    _build_fails(tmp_path, _entry("m", weights="evil.pt"), r"'m'.*field 'weights'")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (_entry("a", architecture="torchvision:resnet19"), r"'a'.*field 'architecture'.*resnet19"),
        (_entry("b", weights="nope.pt"), r"model 'b': field 'weights'.*does not exist"),
        (_entry("c", num_classes=0), r"model 'c': field 'num_classes'"),
        (_entry("../etc"), r"field 'name'"),
        (_entry("d") + 'colour = "x"\n', r"field 'colour'"),
        ("models = 3", r"needs at least one \[\[models\]\]"),
        ("[[models]\n", r"not valid TOML"),
    ],
)
def test_bad_entries_name_entry_and_field(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        specs = load_config(_write(tmp_path, text))
        for spec in specs:
            build_model(spec)


def test_shape_mismatch_names_the_entry(tmp_path: Path) -> None:
    write_resnet_config(tmp_path)  # weights for 10 classes
    _build_fails(
        tmp_path,
        _entry("wide", weights="resnet-seed7.safetensors", num_classes=1000),
        r"'wide': field 'weights'.*shape mismatch.*fc.weight",
    )


def test_torchvision_weights_without_cache_or_downloads_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    config = _write(tmp_path, _entry("tv", weights="torchvision:DEFAULT", num_classes=1000))
    (spec,) = load_config(config)
    with pytest.raises(ConfigError, match=r"'tv': field 'weights'.*LAYERSCOPE_ALLOW_DOWNLOADS"):
        build_model(spec, allow_downloads=False)


def test_missing_models_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LAYERSCOPE_MODELS"):
        load_config(tmp_path / "missing.toml")


def test_random_initialisation_is_reproducible(tmp_path: Path) -> None:
    config = _write(tmp_path, _entry("r"))
    (spec,) = load_config(config)
    first, second = build_model(spec), build_model(spec)
    assert first.pretrained is False
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            first.module.state_dict().values(), second.module.state_dict().values(), strict=True
        )
    )
