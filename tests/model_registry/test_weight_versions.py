"""State dicts without per-module versions (safetensors, plain dicts) load into modules
whose `_load_from_state_dict` reads one (MNASNet, BatchNorm, ViT's MLPBlock), in every
weights format (issue 25, item 3)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from model_registry.config import load_config
from model_registry.loading import build_model, load_state
from model_registry.spec import ModelSpec
from tests.helpers import toml_table

BUILDERS = torchvision.models.list_models(module=torchvision.models)


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Parameters and buffers made on the meta device as they are registered: the module
    tree and its versions without the memory (regnet's builder computes on real tensors,
    so a meta default device cannot build it)."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self: nn.Module, name: str, value: nn.Parameter | None) -> None:
        if value is not None:
            value = nn.Parameter(value.to("meta"), requires_grad=value.requires_grad)
        register_parameter(self, name, value)

    def buffer(self: nn.Module, name: str, value: torch.Tensor | None, persistent=True) -> None:
        register_buffer(self, name, None if value is None else value.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = (
            register_parameter,
            register_buffer,
        )  # type: ignore[method-assign]


def on_meta(builder: str) -> nn.Module:
    with parameters_on_meta():
        return (
            torchvision.models.get_model(builder, num_classes=10, init_weights=False)
            if (builder in ("googlenet", "inception_v3"))
            else torchvision.models.get_model(builder, num_classes=10)
        )


def versions(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Modules whose version is not the default 1: those that may read it when loading."""
    metadata = getattr(state, "_metadata", {})
    return {k: v["version"] for k, v in metadata.items() if v.get("version") not in (None, 1)}


def spec_of(builder: str) -> ModelSpec:
    return ModelSpec(
        name="m",
        architecture=f"torchvision:{builder}",
        weights=None,
        input_size=(32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.2, 0.2, 0.2),
        num_classes=10,
    )


@pytest.mark.parametrize("builder", BUILDERS)
def test_a_state_without_versions_loads_with_the_fresh_modules_versions(builder: str) -> None:
    module = on_meta(builder)
    saved = module.state_dict()
    plain = dict(saved)  # what a safetensors file gives: no _metadata
    load_state(module, plain, spec_of(builder))
    if versions(saved) and builder.startswith("mnasnet"):
        # The failure this guards against: torch's own loader, given no versions.
        with pytest.raises(ValueError, match="version should be set to 1 or 2"):
            module.load_state_dict(plain)


def test_versioned_modules_are_among_the_builders() -> None:
    """The sweep above covers builders that read versions (not only plain ones)."""
    found = {
        b for b in ("mnasnet0_5", "densenet121", "vit_b_16") if versions(on_meta(b).state_dict())
    }
    assert found == {"mnasnet0_5", "densenet121", "vit_b_16"}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth", ".bin"])
def test_mnasnet_weights_load_from_every_format(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(3)
    reference = torchvision.models.mnasnet0_5(num_classes=10).eval()
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    path = tmp_path / f"m{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    (tmp_path / "models.toml").write_text(
        toml_table(
            "models",
            name="m",
            architecture="torchvision:mnasnet0_5",
            weights=path.name,
            input_size=[32, 32],
            mean=[0.5, 0.5, 0.5],
            std=[0.2, 0.2, 0.2],
            num_classes=10,
        )
    )
    (spec,) = load_config(tmp_path / "models.toml")
    built = build_model(spec).module
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        # float32 tolerance: two module instances may be given other oneDNN kernels.
        torch.testing.assert_close(built(x), reference(x), rtol=1e-4, atol=1e-5)
