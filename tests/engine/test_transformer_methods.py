"""`rollout` and `legrad` on tiny seeded ViTs (torchvision and timm) against references that
read the attention another way: the modules' own attention weights, and torchcam's LeGrad."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torchcam.methods import LeGrad as TorchcamLeGrad

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam
from service.engine.attribution.plan import plan_cam
from tests.numerics import assert_float32_close
from tests.tiny_models import loaded, pearson, seeded

TARGETS = (3, 6)


@pytest.fixture(scope="module")
def timm_vit() -> LoadedModel:
    module = seeded(
        lambda: TimmViT(
            img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10
        ),
        seed=5,
    )
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(2)  # timm starts the head at zero, which makes every logit 0
        torch.nn.init.normal_(module.head.weight, std=0.5)
    return loaded("tiny-timm-vit", module, (32, 32), 10)


def _batch() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))


def _ours(model: LoadedModel, method: str, batch: torch.Tensor) -> np.ndarray:
    """[B, T, 32, 32] maps, unscaled (ReLU and bilinear upsampling as every CAM)."""
    plan = plan_cam(model, method=method, layers=[], targets=",".join(map(str, TARGETS)))
    blank = np.zeros((len(batch), 32, 32, 3), np.uint8)
    return compute_cam(model, batch, plan, inputs=blank).layers[0].maps


def _upsampled(grid_maps: torch.Tensor) -> np.ndarray:
    """[B, T, h, w] -> [B, T, 32, 32] as the CAM path upsamples."""
    return F.interpolate(grid_maps.clamp(min=0), size=(32, 32), mode="bilinear").numpy()


def _torchvision_weights(model: LoadedModel, batch: torch.Tensor) -> list[np.ndarray]:
    """Per-head attention weights of every block, asked from nn.MultiheadAttention itself."""
    module, found = copy.deepcopy(model.module), []

    def ask(_m, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    for block in module.encoder.layers:
        block.self_attention.register_forward_pre_hook(ask, with_kwargs=True)
        block.self_attention.register_forward_hook(lambda _m, _i, out: found.append(out[1]))
    with torch.no_grad():
        module(batch)
    return [weights.numpy().astype(np.float64) for weights in found]


def _timm_weights(model: LoadedModel, batch: torch.Tensor) -> list[torch.Tensor]:
    """timm's unfused attention path: the probabilities are the input of `attn_drop`."""
    module, found = copy.deepcopy(model.module), []
    for block in module.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda _m, inputs, _o: found.append(inputs[0]))
    return module, found


def _numpy_rollout(weights: list[np.ndarray], prefix: int, grid: int) -> torch.Tensor:
    """The paper's formula: A = (mean_heads(W) + I) row-normalized, A_L ... A_1, CLS row."""
    joint = np.eye(weights[0].shape[-1])[None]
    for layer in weights:
        mixed = layer.mean(axis=1) + np.eye(layer.shape[-1])[None]
        mixed = mixed / mixed.sum(axis=-1, keepdims=True)
        joint = mixed @ joint
    cls_row = joint[:, 0, prefix:].reshape(-1, 1, grid, grid)
    return torch.from_numpy(np.repeat(cls_row, len(TARGETS), axis=1)).float()


def test_rollout_equals_the_formula_on_torchvision_attention_weights(
    tiny_vit: LoadedModel,
) -> None:
    batch = _batch()
    expected = _upsampled(_numpy_rollout(_torchvision_weights(tiny_vit, batch), 1, 4))
    ours = _ours(tiny_vit, "rollout", batch)
    assert ours.shape == (2, 2, 32, 32)
    assert pearson(ours, expected) >= 0.999
    assert_float32_close(ours, expected)


def test_rollout_equals_the_formula_on_timm_attention_weights(timm_vit: LoadedModel) -> None:
    batch = _batch()
    module, found = _timm_weights(timm_vit, batch)
    with torch.no_grad():
        module(batch)
    weights = [w.numpy().astype(np.float64) for w in found]
    expected = _upsampled(_numpy_rollout(weights, 1, 4))
    ours = _ours(timm_vit, "rollout", batch)
    assert pearson(ours, expected) >= 0.999
    assert_float32_close(ours, expected)


def test_legrad_equals_torchcam_legrad_on_a_torchvision_vit(tiny_vit: LoadedModel) -> None:
    batch = _batch()
    module = copy.deepcopy(tiny_vit.module)
    expected = []
    with TorchcamLeGrad(module, list(module.encoder.layers)) as extractor:
        for target in TARGETS:
            scores = module(batch)
            (cam,) = extractor([target] * len(batch), scores, normalized=False)
            expected.append(cam.detach())
    reference = _upsampled(torch.stack(expected, dim=1))
    ours = _ours(tiny_vit, "legrad", batch)
    assert pearson(ours, reference) >= 0.99
    assert_float32_close(ours, reference)


def test_legrad_on_timm_follows_torchcam_definition(timm_vit: LoadedModel) -> None:
    """torchcam's LeGrad takes torchvision blocks only: on timm the same definition is
    written out on timm's own unfused attention probabilities."""
    batch = _batch()
    module, found = _timm_weights(timm_vit, batch)
    outputs = []
    for block in module.blocks:
        block.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    with torch.enable_grad():
        module(batch.clone().requires_grad_(True))
        maps = []
        for target in TARGETS:
            layers = []
            for tokens, attention in zip(outputs, found, strict=True):
                score = module.head(module.fc_norm(module.norm(tokens.mean(dim=1))))[:, target]
                (grad,) = torch.autograd.grad(score.sum(), attention, retain_graph=True)
                layers.append(grad.relu().mean(dim=(1, 2))[:, 1:].reshape(-1, 4, 4))
            maps.append(torch.stack(layers).mean(dim=0))
    reference = _upsampled(torch.stack(maps, dim=1).detach())
    ours = _ours(timm_vit, "legrad", batch)
    assert pearson(ours, reference) >= 0.99
    assert_float32_close(ours, reference)


@pytest.mark.parametrize("method", ["rollout", "legrad"])
def test_transformer_maps_refuse_a_cnn(method: str, digits: LoadedModel) -> None:
    with pytest.raises(InvalidInput, match="vision transformer") as caught:
        plan_cam(digits, method=method, layers=[])
    assert caught.value.field == "method"


def test_transformer_maps_leave_the_shared_model_as_found(timm_vit: LoadedModel) -> None:
    module = timm_vit.module
    state = {k: v.clone() for k, v in module.state_dict().items()}
    fused = [block.attn.fused_attn for block in module.blocks]
    _ours(timm_vit, "legrad", _batch())
    for child in module.modules():
        assert not child._forward_hooks and not child._forward_pre_hooks
    assert [block.attn.fused_attn for block in module.blocks] == fused
    assert all(p.grad is None for p in module.parameters()) and module.training is False
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key
