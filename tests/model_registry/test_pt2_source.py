"""`pt2:` entries: torch.export programs unflattened with the original model's names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model_registry.catalog import build_catalog
from model_registry.config import load_config
from model_registry.errors import ConfigError
from model_registry.loading import build_model
from model_registry.registry import load_model
from tests.numerics import assert_float32_close
from tests.pt2_models import CLASSES, SIZE, export_to, pt2_entry, residual_net
from tests.test_startup import serve

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def program_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_to(residual_net(), tmp_path_factory.mktemp("pt2") / "net.pt2")


def _load(folder: Path, text: str):
    (folder / "models.toml").write_text(text)
    (spec,) = load_config(folder / "models.toml")
    return spec


def test_program_serves_with_the_original_names_calls_and_outputs(
    program_file: Path, tmp_path: Path
) -> None:
    spec = _load(tmp_path, pt2_entry("net", program_file))
    assert spec.input_size == (SIZE, SIZE) and spec.num_classes == CLASSES  # from the program
    assert spec.architecture == f"pt2:{program_file}"
    loaded = load_model(spec, CPU)
    original = residual_net()
    assert loaded.pretrained  # the program's own weights
    names = [n for n, _ in original.named_modules() if n]
    assert [n for n, _ in loaded.module.named_modules() if n] == names
    expected = build_catalog("net", original, (3, SIZE, SIZE), CPU)
    ours = [(i.name, i.output_shape, i.calls, i.order, i.params) for i in loaded.catalog.entries()]
    assert ours == [
        (i.name, i.output_shape, i.calls, i.order, i.params) for i in expected.entries()
    ]
    assert loaded.catalog.get("layer1.0.relu").calls == 2
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        # The exported program may decompose ops into other kernels: float32 rounding of
        # another summation order (tests/numerics.py).
        assert_float32_close(loaded.module(x), original(x))
        assert_float32_close(loaded.module(x[:1]), original(x[:1]))
    assert all(not p.requires_grad for p in loaded.module.parameters())


def test_a_weights_file_replaces_the_programs_weights(program_file: Path, tmp_path: Path) -> None:
    other = residual_net(seed=9)
    save_file(other.state_dict(), str(tmp_path / "other.safetensors"))
    spec = _load(tmp_path, pt2_entry("net", program_file, 'weights = "other.safetensors"'))
    module = build_model(spec).module
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert_float32_close(module(x), other(x))  # another kernel path: tests/numerics.py
        assert not torch.allclose(module(x), residual_net()(x), atol=1e-3)


def _static(folder: Path) -> Path:
    return export_to(residual_net(), folder / "static.pt2", dynamic_batch=False)


def _training(folder: Path) -> Path:
    return export_to(residual_net().train(), folder / "training.pt2")


def _garbage(folder: Path) -> Path:
    (folder / "garbage.pt2").write_bytes(b"not a program")
    return folder / "garbage.pt2"


BAD = {
    "missing": (lambda f: f / "missing.pt2", r"field 'architecture'.*missing\.pt2.*does not exist"),
    "suffix": (lambda f: f / "net.pth", r"field 'architecture'.*must name a \.pt2 file"),
    "garbage": (_garbage, r"field 'architecture'.*cannot be read by torch\.export\.load"),
    "static-batch": (_static, r"field 'architecture'.*batches of 2 only.*Dim\('batch'\)"),
    "training-mode": (_training, r"field 'architecture'.*training mode.*model\.eval\(\)"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_programs_name_entry_and_field(case: str, tmp_path: Path) -> None:
    make, message = BAD[case]
    (tmp_path / "models.toml").write_text(pt2_entry("bad", make(tmp_path)))
    with pytest.raises(ConfigError, match=f"model 'bad'.*{message}") as info:
        load_config(tmp_path / "models.toml")
    assert "\n" not in str(info.value)


def test_weights_that_do_not_fit_name_the_field(program_file: Path, tmp_path: Path) -> None:
    state = residual_net().state_dict()
    state["fc.weight"] = torch.zeros(7, 16)
    save_file(state, str(tmp_path / "bad.safetensors"))
    spec = _load(tmp_path, pt2_entry("bad", program_file, 'weights = "bad.safetensors"'))
    with pytest.raises(ConfigError, match=r"model 'bad': field 'weights'.*fc\.weight"):
        build_model(spec)


def test_a_bad_program_ends_start_up_with_one_line_and_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(pt2_entry("bad", _garbage(tmp_path)))
    result = serve({"LAYERSCOPE_MODELS": str(path)})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"layerscope: models file {path}: "), lines
    assert "model 'bad': field 'architecture'" in lines[0] and "torch.export.load" in lines[0]
