"""Model sources: defaults from the weights, exact loading, catalogs, and errors naming fields."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_registry.config import load_config
from model_registry.errors import ConfigError
from model_registry.loading import build_model
from model_registry.registry import LoadedModel
from tests.helpers import toml_table
from tests.source_models import FACTORY, HF_LABELS, TINY_VIT, write_hf_vit

NAMES = ["tcnn", "tvit", "tdeit", "tswin", "hvit", "py", "tv"]


def test_specs_take_what_the_models_file_omits_from_the_source(
    source_models: dict[str, LoadedModel],
) -> None:
    tvit = source_models["tvit"].spec
    assert tvit.input_size == (32, 32)  # options.img_size
    assert tvit.mean == (0.5, 0.5, 0.5) and tvit.std == (0.5, 0.5, 0.5)  # pretrained_cfg
    assert (tvit.resize, tvit.crop_pct) == ("crop", 0.9)
    tcnn = source_models["tcnn"].spec
    assert tcnn.mean == (0.485, 0.456, 0.406) and tcnn.crop_pct == 0.95
    hvit = source_models["hvit"].spec
    assert hvit.input_size == (32, 32) and hvit.num_classes == 3
    assert hvit.mean == (0.5, 0.4, 0.3) and hvit.std == (0.2, 0.25, 0.3)
    assert hvit.labels == HF_LABELS and hvit.resize == "squash"
    assert source_models["hvit"].label(1) == "dog"
    assert source_models["py"].spec.options == {"width": 6, "classes": 3}
    assert source_models["tv"].spec.resize == "squash"  # no torchvision weights named


@pytest.mark.parametrize("name", NAMES)
def test_catalog_names_equal_named_modules_and_output_is_logits(
    name: str, source_models: dict[str, LoadedModel]
) -> None:
    model = source_models[name]
    names = [n for n, _ in model.module.named_modules() if n]
    assert [layer.name for layer in model.catalog] == names
    x = torch.randn(2, model.spec.in_channels, *model.spec.input_size)
    with torch.inference_mode():
        out = model.module(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, model.spec.num_classes)
    assert not model.module.training
    assert not any(p.requires_grad for p in model.module.parameters())


def test_hf_model_gives_the_logits_transformers_gives(
    source_models: dict[str, LoadedModel], source_models_file: Path
) -> None:
    from transformers import AutoModelForImageClassification

    reference = AutoModelForImageClassification.from_pretrained(
        source_models_file.parent / "hf-vit"
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected = reference(pixel_values=x).logits
        assert torch.allclose(source_models["hvit"].module(x), expected, atol=1e-6)
    assert source_models["hvit"].pretrained


def test_python_factory_is_called_with_options(source_models: dict[str, LoadedModel]) -> None:
    module = source_models["py"].module
    assert type(module).__name__ == "Net" and module.head.out_features == 3
    assert module.stem.out_channels == 6


def test_timm_weights_file_loads_exactly(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(11)
    reference = timm.create_model("vit_tiny_patch16_224", num_classes=4, **TINY_VIT)
    torch.save(reference.state_dict(), tmp_path / "vit.pth")
    (tmp_path / "models.toml").write_text(
        toml_table(
            "models",
            name="v",
            architecture="timm:vit_tiny_patch16_224",
            weights="vit.pth",
            num_classes=4,
            options=TINY_VIT,
        )
    )
    built = build_model(load_config(tmp_path / "models.toml")[0])
    assert built.pretrained
    for key, value in built.module.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key


def _entry(architecture: str, extra: str = "") -> str:
    return (
        f'[[models]]\nname = "bad"\narchitecture = "{architecture}"\ninput_size = [32, 32]\n'
        f"mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\nnum_classes = 3\n{extra}"
    )


BAD_AT_PARSE = {
    "unknown-timm": (_entry("timm:resnet1800"), r"'bad'.*field 'architecture'.*unknown timm"),
    "unknown-prefix": (_entry("keras:resnet"), r"'bad'.*field 'architecture'.*timm:<\.\.\.>"),
    "hf-no-config": (_entry("hf:empty"), r"'bad'.*field 'architecture'.*no config\.json"),
    "hf-no-dir": (_entry("hf:nowhere"), r"'bad'.*field 'architecture'.*does not exist"),
    "py-no-file": (_entry("python:missing.py:make"), r"'bad'.*field 'architecture'.*missing\.py"),
    "py-no-module": (
        _entry("python:no_such_pkg.models:make"),
        r"'bad'.*field 'architecture'.*no_such_pkg",
    ),
    "py-malformed": (_entry("python:factory.py"), r"'bad'.*field 'architecture'.*python:<file"),
    "timm-bad-weights-name": (
        _entry("timm:resnet18", 'weights = "timm:best"\n'),
        r"'bad'.*field 'weights'.*timm:pretrained",
    ),
    "no-input-size": (
        '[[models]]\nname = "bad"\narchitecture = "python:factory.py:make"\nnum_classes = 3\n',
        r"'bad'.*field 'input_size': required",
    ),
}


@pytest.mark.parametrize("case", BAD_AT_PARSE, ids=list(BAD_AT_PARSE))
def test_bad_entries_name_entry_and_field(case: str, tmp_path: Path) -> None:
    text, message = BAD_AT_PARSE[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "factory.py").write_text(FACTORY)
    (tmp_path / "models.toml").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(tmp_path / "models.toml")
    assert "\n" not in str(info.value)


BAD_AT_BUILD = {
    "py-no-callable": (
        _entry("python:factory.py:build_it"),
        r"model 'bad': field 'architecture'.*no callable 'build_it'.*make",
    ),
    "py-not-a-module": (
        _entry("python:factory.py:not_a_module"),
        r"model 'bad': field 'architecture'.*returned int, not a torch\.nn\.Module",
    ),
    "py-bad-options": (
        _entry("python:factory.py:make", "options = { depth = 3 }\n"),
        r"model 'bad': field 'options'.*depth",
    ),
    "timm-bad-options": (
        _entry("timm:resnet18", "options = { wings = 2 }\n"),
        r"model 'bad': field 'options'.*wings",
    ),
    "timm-weights-do-not-fit": (
        _entry("timm:resnet18", 'weights = "other.pth"\n'),
        r"model 'bad': field 'weights'.*does not fit timm:resnet18.*fc\.weight",
    ),
    "timm-pretrained-not-cached": (
        _entry("timm:resnet18", 'weights = "timm:pretrained"\n'),
        r"model 'bad': field 'weights'.*not in the local.*LAYERSCOPE_ALLOW_DOWNLOADS",
    ),
    "hf-weights-do-not-fit": (
        _entry("hf:hf-vit").replace("num_classes = 3", "num_classes = 7"),
        r"model 'bad': field 'weights'.*do not fit.*classifier",
    ),
}


@pytest.mark.parametrize("case", BAD_AT_BUILD, ids=list(BAD_AT_BUILD))
def test_bad_models_fail_to_build_naming_model_and_field(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import timm

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    text, message = BAD_AT_BUILD[case]
    (tmp_path / "factory.py").write_text(FACTORY)
    write_hf_vit(tmp_path / "hf-vit")
    torch.save(timm.create_model("resnet18", num_classes=10).state_dict(), tmp_path / "other.pth")
    (tmp_path / "models.toml").write_text(text)
    (spec,) = load_config(tmp_path / "models.toml")
    with pytest.raises(ConfigError, match=message) as info:
        build_model(spec, allow_downloads=False)
    assert "\n" not in str(info.value)
