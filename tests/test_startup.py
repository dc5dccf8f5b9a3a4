"""Start-up failures, through real `layerscope serve` processes: one line on stderr naming
the file or setting, the entry and the field; exit code 2; a traceback only with --debug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from model_registry.builtin import digits

ROOT = Path(__file__).resolve().parents[1]
ENTRY = (
    '[[models]]\nname = "resnet18"\narchitecture = "{architecture}"\n{weights}'
    "input_size = [64, 64]\nmean = [0.5, 0.5, 0.5]\nstd = [0.2, 0.2, 0.2]\nnum_classes = 10\n"
)


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", "1", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def models_file(folder: Path, text: str) -> Path:
    path = folder / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Case(NamedTuple):
    name: str
    text: str | None  # the models file, or None for none
    env: dict[str, str]
    expected: str  # the whole line after "layerscope: models file <path>: " or the setting's


CASES = [
    Case(
        "unknown architecture",
        ENTRY.format(architecture="torchvision:resnet_nineteen", weights=""),
        {},
        "model 'resnet18': field 'architecture': unknown architecture "
        "'torchvision:resnet_nineteen'; did you mean ",
    ),
    Case(
        "weights that do not fit",
        ENTRY.format(
            architecture="torchvision:resnet18", weights=f'weights = "{digits.WEIGHTS_PATH}"\n'
        ),
        {},
        "model 'resnet18': field 'weights' (digits.safetensors): does not fit "
        "torchvision:resnet18: missing keys",
    ),
    Case("malformed TOML", "[[models]\nname =", {}, ""),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_models_file_ends_start_up_with_one_line(tmp_path: Path, case: Case) -> None:
    path = models_file(tmp_path, case.text or "")
    result = serve({"LAYERSCOPE_MODELS": str(path), **case.env})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    prefix = f"layerscope: models file {path}: " if case.expected else "layerscope: models file "
    assert lines[0].startswith(prefix + case.expected), lines[0]


SHARDS = "layerscope: setting LAYERSCOPE_SHARD_IMAGES:"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LAYERSCOPE_MAX_BATCH": "0"}, "layerscope: setting LAYERSCOPE_MAX_BATCH: Input should"),
        ({"LAYERSCOPE_PORT": "http"}, "layerscope: setting LAYERSCOPE_PORT: Input should"),
        ({"LAYERSCOPE_DEVICE": "gpu"}, "layerscope: setting LAYERSCOPE_DEVICE: 'gpu' is not"),
        *(
            ({"LAYERSCOPE_SHARD_IMAGES": value}, f"{SHARDS} Input should {expected}")
            for value, expected in (
                ("0", "be greater than or equal to 1 (got '0')"),
                ("-1", "be greater than or equal to 1 (got '-1')"),
                ("100001", "be less than or equal to 100000 (got '100001')"),
                ("x", "be a valid integer"),
            )
        ),
    ],
)
def test_a_bad_setting_ends_start_up_with_one_line(env: dict[str, str], expected: str) -> None:
    result = serve(env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(expected), result.stderr


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    path = models_file(tmp_path, ENTRY.format(architecture="torchvision:nope", weights=""))
    result = serve({"LAYERSCOPE_MODELS": str(path)}, "--debug")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"layerscope: models file {path}: model")


def _mnasnet_weights(folder: Path) -> None:
    """mnasnet0_5 weights for 5 classes, as safetensors, where the entry says 10."""
    import torchvision
    from safetensors.torch import save_file

    state = torchvision.models.mnasnet0_5(num_classes=5).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "m.safetensors"))


def _broken_module(folder: Path) -> None:
    (folder / "broken.py").write_text("raise RuntimeError('boom at import')\n")


class Failure(NamedTuple):
    name: str
    fields: dict[str, object]  # the entry's fields besides name, mean, std and num_classes
    # (input_size [64, 64] unless given; None leaves it out)
    expected: str  # a regular expression for the line after "layerscope: models file <path>: "
    prepare: object = None  # writes what the entry names into the folder


# Options the builder does not take fail while the models file is read, as the cases
# above do (tests/model_registry/test_builder_options.py has them); these fail later, while
# a model is built, loaded or first run.
FAILURES = [
    Failure(
        "a builder that raises",
        {
            "architecture": "torchvision:vit_b_16",
            "input_size": None,
            "options": {"image_size": 100},
        },
        r"model 'm' \(torchvision:vit_b_16\): building it: AssertionError: Input shape "
        r"indivisible by patch size!",
    ),
    Failure(
        "weights of other shapes",
        {"architecture": "torchvision:mnasnet0_5", "weights": "m.safetensors"},
        r"model 'm': field 'weights' \(m\.safetensors\): does not fit torchvision:mnasnet0_5: "
        r"shape mismatch "
        r"\['classifier\.1\.weight: file \(5, 1280\) vs model \(10, 1280\)'",
        _mnasnet_weights,
    ),
    Failure(
        "first forward pass",
        {"architecture": "torchvision:vit_b_16", "input_size": [96, 96]},
        r"model 'm' \(torchvision:vit_b_16\): first forward pass at input_size \[96, 96\]: "
        r"AssertionError: .*; .*add options = \{ image_size = 96 \} or change input_size",
    ),
    Failure(
        "timm input_size without img_size",
        {"architecture": "timm:vit_tiny_patch16_224", "input_size": [96, 96]},
        r"model 'm' \(timm:vit_tiny_patch16_224\): first forward pass at input_size \[96, 96\]"
        r": AssertionError: .*add options = \{ img_size = \[96, 96\] \}",
    ),
    Failure(
        "python import",
        {"architecture": "python:broken.py:make", "input_size": [32, 32]},
        r"model 'm': field 'architecture' .*importing .*broken\.py' failed: "
        r"RuntimeError\('boom at import'\)",
        _broken_module,
    ),
]


@pytest.mark.parametrize("case", FAILURES, ids=[c.name for c in FAILURES])
def test_a_model_that_cannot_be_built_ends_start_up_with_one_line(
    tmp_path: Path, case: Failure
) -> None:
    import re

    from tests.helpers import toml_table

    if callable(case.prepare):
        case.prepare(tmp_path)
    fields = {"input_size": [64, 64], **case.fields}
    text = toml_table(
        "models", name="m", mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2], num_classes=10, **fields
    )
    path = models_file(tmp_path, text)
    result = serve({"LAYERSCOPE_MODELS": str(path), "LAYERSCOPE_DEVICE": "cpu"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.rstrip("\n")], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    line = result.stderr.strip()
    prefix = f"layerscope: models file {path}: "
    assert line.startswith(prefix) and re.fullmatch(case.expected + ".*", line[len(prefix) :]), line
