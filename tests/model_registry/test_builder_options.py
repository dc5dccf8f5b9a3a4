"""Options reach the builder and are checked against it; options that set the input size
decide `input_size` or must agree with it; warnings while loading name the model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from model_registry.config import load_config
from model_registry.errors import ConfigError
from model_registry.loading import build_model
from model_registry.sources.torchvision_source import TorchvisionSource
from tests.helpers import toml_table
from tests.source_models import write_hf_vit


def entry(**fields: object) -> str:
    base = {"name": "m", "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2], "num_classes": 10}
    return toml_table("models", **{**base, **fields})


def specs(folder: Path, text: str):
    (folder / "models.toml").write_text(text, encoding="utf-8")
    return load_config(folder / "models.toml")


BAD = {
    "unknown": (
        entry(architecture="torchvision:resnet18", input_size=[32, 32], options={"wings": 2}),
        r"^models file .*: model 'm': field 'options': torchvision\.models\.resnet18 takes no "
        r"option 'wings' \(it takes: .*zero_init_residual\)$",
    ),
    "wrong type": (
        entry(architecture="torchvision:googlenet", input_size=[32, 32], options={"dropout": "x"}),
        r"field 'options': option 'dropout' of torchvision\.models\.googlenet must be float, "
        r"not 'x'",
    ),
    "wrong element type": (
        entry(architecture="torchvision:swin_t", input_size=[32, 32], options={"depths": [2, "a"]}),
        r"field 'options': option 'depths' .* must be list\[int\]",
    ),
    "set by layerscope": (
        entry(architecture="torchvision:resnet18", input_size=[32, 32], options={"weights": "x"}),
        r"field 'options': option 'weights' is set by layerscope: name the weights in the "
        r"entry's 'weights' field",
    ),
    "geometry disagreement": (
        entry(architecture="torchvision:vit_b_16", input_size=[64, 96], options={"image_size": 96}),
        r"field 'input_size': \[64, 96\] disagrees with options\.image_size = 96, .*change one",
    ),
    "geometry of the wrong type": (
        entry(architecture="timm:vit_tiny_patch16_224", options={"img_size": "big"}),
        r"field 'options': option 'img_size' must be an integer or \[height, width\]",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_option_is_one_line_naming_model_and_option(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    with pytest.raises(ConfigError, match=expected) as caught:
        specs(tmp_path, text)
    assert "\n" not in str(caught.value)


def test_input_size_follows_the_geometry_option(tmp_path: Path) -> None:
    (vit,) = specs(tmp_path, entry(architecture="torchvision:vit_b_16", options={"image_size": 96}))
    assert vit.input_size == (96, 96)
    (maxvit,) = specs(
        tmp_path, entry(architecture="torchvision:maxvit_t", options={"input_size": [224, 224]})
    )
    assert maxvit.input_size == (224, 224)


def test_torchvision_weights_set_what_torchvision_sets_for_them() -> None:
    """googlenet's ImageNet weights expect `transform_input`, as torchvision builds it."""
    (spec,) = [
        s
        for s in load_config_text(
            entry(
                architecture="torchvision:googlenet",
                weights="torchvision:IMAGENET1K_V1",
                num_classes=1000,
            )
        )
    ]
    assert TorchvisionSource().build(spec).transform_input is True
    plain = entry(architecture="torchvision:googlenet", input_size=[32, 32])
    assert TorchvisionSource().build(load_config_text(plain)[0]).transform_input is False


def load_config_text(text: str):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return specs(Path(folder), text)


def test_hf_options_must_be_config_fields(tmp_path: Path) -> None:
    folder = write_hf_vit(tmp_path / "vit")
    for options, expected in (
        ({"no_such_field": 1}, r"ViTConfig \(config\.json\) takes no option 'no_such_field'"),
        ({"hidden_dropout_prob": "high"}, r"option 'hidden_dropout_prob' .* must be float"),
    ):
        (spec,) = specs(
            tmp_path, entry(architecture=f"hf:{folder}", num_classes=3, options=options)
        )
        with pytest.raises(ConfigError, match=r"model 'm': field 'options': " + expected):
            build_model(spec)
    (spec,) = specs(
        tmp_path,
        entry(architecture=f"hf:{folder}", num_classes=3, options={"hidden_dropout_prob": 0.25}),
    )
    assert build_model(spec).module.config.hidden_dropout_prob == 0.25


def test_warnings_while_loading_name_the_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "factory.py").write_text(
        "import warnings\nimport torch\n\n"
        "def make():\n"
        "    warnings.warn('this layer is deprecated')\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())\n"
    )
    (spec,) = specs(
        tmp_path, entry(architecture="python:factory.py:make", input_size=[8, 8], num_classes=144)
    )
    with caplog.at_level(logging.WARNING, logger="layerscope.models"):
        built = build_model(spec)
    assert isinstance(built.module, torch.nn.Sequential)
    assert [r.getMessage() for r in caplog.records] == [
        f"model 'm' ({spec.architecture}): building it: UserWarning: this layer is deprecated"
    ]


def test_timm_and_python_options_of_the_wrong_type_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "factory.py").write_text(
        "import torch\n\n"
        "def make(width: int = 4):\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.Flatten())\n"
    )
    cases = (
        (
            entry(architecture="python:factory.py:make", input_size=[8, 8], options={"width": "4"}),
            r"model 'm': field 'options': option 'width' of make\(\) must be int, not '4'$",
        ),
        (
            entry(architecture="python:factory.py:make", input_size=[8, 8], options={"depth": 2}),
            r"model 'm': field 'options': make\(\) takes no option 'depth' \(it takes: width\)$",
        ),
        (
            entry(architecture="timm:vit_tiny_patch16_224", options={"img_size": 32, "depth": "2"}),
            r"model 'm': field 'options': option 'depth' of timm:vit_tiny_patch16_224 must be "
            r"int, not '2'$",
        ),
    )
    for text, expected in cases:
        (spec,) = specs(tmp_path, text)
        with pytest.raises(ConfigError, match=expected):
            build_model(spec)
