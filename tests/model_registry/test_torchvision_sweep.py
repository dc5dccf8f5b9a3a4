"""The smallest member of every torchvision classification family, served from one models
file with seeded `.safetensors` weights at the smallest input it accepts: its feature maps
are those of forward hooks on the model built with the same options (issue 25).

One app serves them all; each reference model is the very module whose state was saved,
so the weights compared are the same and only the service's path (config, options,
weights loading, catalog, capture) is under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
import torchvision
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from service.app import create_app
from service.settings import Settings
from tests.helpers import files, load_npy, png, toml_table


class Family(NamedTuple):
    name: str  # the entry's name
    builder: str
    size: int  # the smallest input side the builder's model accepts
    layer: str  # a deep layer whose maps are compared
    options: dict[str, Any]


FAMILIES = [
    Family("resnet", "resnet18", 16, "layer4", {}),
    Family("mnasnet", "mnasnet0_5", 16, "layers", {}),
    Family("googlenet", "googlenet", 16, "inception5b", {"transform_input": True}),
    Family("googlenet-plain", "googlenet", 16, "inception5b", {"transform_input": False}),
    Family("inception", "inception_v3", 75, "Mixed_7c", {}),
    Family("densenet", "densenet121", 32, "features", {}),
    Family("squeezenet", "squeezenet1_1", 24, "features", {}),
    Family("shufflenet", "shufflenet_v2_x0_5", 16, "conv5", {}),
    Family("mobilenet", "mobilenet_v3_small", 16, "features", {}),
    Family("efficientnet", "efficientnet_b0", 16, "features", {}),
    Family("regnet", "regnet_y_400mf", 16, "trunk_output", {}),
    Family("convnext", "convnext_tiny", 32, "features", {}),
    # vit_b_16 is the smallest torchvision ViT; 96 px is the case (6 x 6 patches).
    Family("vit", "vit_b_16", 96, "encoder", {"image_size": 96}),
    Family("swin", "swin_t", 16, "permute", {}),
    Family("maxvit", "maxvit_t", 224, "blocks.3", {}),
]
IDS = [f.name for f in FAMILIES]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def seeded(family: Family, seed: int) -> torch.nn.Module:
    """The family's model with seeded weights and BatchNorm statistics away from 0 and 1."""
    torch.manual_seed(seed)
    extra = (
        {"aux_logits": False, "init_weights": False}
        if family.builder
        in (
            "googlenet",
            "inception_v3",
        )
        else {}
    )  # init_weights only picks the (slow) initialisation the seed then fills
    model = torchvision.models.get_model(family.builder, num_classes=10, **extra, **family.options)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict]]:
    """One app serving every family, and the reference modules by entry name."""
    folder = tmp_path_factory.mktemp("sweep")
    references: dict[str, torch.nn.Module] = {}
    text = ""
    for index, family in enumerate(FAMILIES):
        seed = 0 if family.builder == "googlenet" else index  # both googlenets: one file
        model = seeded(family, seed)
        references[family.name] = model
        weights = folder / f"{family.builder}-{seed}.safetensors"
        if not weights.exists():
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
        size = None if "image_size" in family.options else [family.size, family.size]
        text += toml_table(
            "models",
            name=family.name,
            architecture=f"torchvision:{family.builder}",
            weights=weights.name,
            input_size=size,  # the ViT's follows options.image_size
            mean=list(MEAN),
            std=list(STD),
            num_classes=10,
            options=family.options or None,
        )
    (folder / "models.toml").write_text(text, encoding="utf-8")
    settings = Settings(models=folder / "models.toml", device="cpu")
    with TestClient(create_app(settings)) as client:
        yield client, references


def pictures(size: int) -> list[Image.Image]:
    """Two real photos already at the model's size, so the upload is not resampled."""
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(p).resize((size, size)) for p in load_sample_images().images]


def as_maps(output: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A hooked output as the [B, C, H, W] maps the service shows: channels-first as it is,
    channels-last permuted, ViT tokens without the class token laid out on their grid."""
    if output.dim() == 4 and tuple(output.shape[1:]) == shape:
        return output.numpy()
    if output.dim() == 4:
        return output.permute(0, 3, 1, 2).numpy()
    channels, height, width = shape
    grid = output[:, -height * width :, :].reshape(output.shape[0], height, width, channels)
    return grid.permute(0, 3, 1, 2).numpy()


def hooked(model: torch.nn.Module, layer: str, batch: torch.Tensor) -> torch.Tensor:
    found: list[torch.Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(
        lambda _m, _i, out: found.append(out.detach().clone())
    )
    try:
        with torch.inference_mode():
            model(batch)
    finally:
        handle.remove()
    return found[0]


def served_maps(
    client: TestClient, family: Family, uploads: list[bytes], layer: str | None = None
) -> np.ndarray:
    answer = client.post(
        f"/v1/models/{family.name}/feature-maps?layers={layer or family.layer}"
        "&channels=all&format=npy",
        files=files(*uploads),
    )
    assert answer.status_code == 200, answer.text
    return load_npy(answer.content)


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_feature_maps_equal_hooks_on_the_model_built_with_the_same_options(
    family: Family, sweep: tuple[TestClient, dict]
) -> None:
    client, references = sweep
    model = client.get(f"/v1/models/{family.name}").json()
    assert model["input_size"] == [family.size, family.size]
    photos = pictures(family.size)
    served = served_maps(client, family, [png(np.asarray(p)) for p in photos])
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    batch = torch.stack(
        [(torch.from_numpy(np.array(p)).permute(2, 0, 1) / 255.0 - mean) / std for p in photos]
    )
    expected = as_maps(hooked(references[family.name], family.layer, batch), served.shape[1:])
    assert served.shape == expected.shape
    # float32 tolerance relative to the largest value: the server runs its own batch, and
    # another batch (or packed weights) may pick other oneDNN kernels, which round otherwise.
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5 * scale)


def test_options_take_effect(sweep: tuple[TestClient, dict]) -> None:
    """googlenet's transform_input re-normalizes inside: same weights, other first maps."""
    client, _ = sweep
    uploads = [png(np.asarray(p)) for p in pictures(16)]
    by_name = {f.name: f for f in FAMILIES}
    with_transform = served_maps(client, by_name["googlenet"], uploads, "conv1")
    without = served_maps(client, by_name["googlenet-plain"], uploads, "conv1")
    assert np.abs(with_transform - without).max() > 0.1 * np.abs(without).max()
