"""Every CAM method against pytorch-grad-cam on a real photo, for a class that is not the top-1."""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from model_registry.layout import to_maps
from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam
from service.engine.attribution.graph import forward_to_layers
from service.engine.attribution.maps import cam_maps
from service.engine.attribution.perturb import ablation_cam_weights, ablation_values
from service.engine.attribution.plan import plan_cam
from tests.tiny_models import model_batch, pearson, second_class


class Reference(NamedTuple):
    method: str
    cls: type


REFERENCES = [
    Reference("gradcam", GradCAM),
    Reference("gradcam++", GradCAMPlusPlus),
    Reference("xgradcam", XGradCAM),
    Reference("layercam", LayerCAM),
    Reference("hirescam", HiResCAM),
    Reference("scorecam", ScoreCAM),
    Reference("ablationcam", AblationCAM),
    Reference("cam", GradCAM),  # Grad-CAM equals CAM on the layer before GAP + linear
]


def trainable_copy(model: LoadedModel) -> torch.nn.Module:
    """pytorch-grad-cam hooks gradients only on outputs that require grad, and swaps modules."""
    module = copy.deepcopy(model.module)
    for param in module.parameters():
        param.requires_grad_(True)
    return module


def reference_cam(
    cls: type, module: torch.nn.Module, layer: str, batch: torch.Tensor, target: int, **kwargs
) -> np.ndarray:
    target_layer = dict(module.named_modules())[layer]
    with cls(model=module, target_layers=[target_layer], **kwargs) as cam:
        return cam(
            input_tensor=batch.clone(), targets=[ClassifierOutputTarget(target)] * len(batch)
        )


@pytest.fixture(scope="module")
def photo_batch(resnet: LoadedModel, photo: Image.Image) -> torch.Tensor:
    return model_batch(resnet, [photo])


@pytest.mark.parametrize("ref", REFERENCES, ids=[r.method for r in REFERENCES])
def test_cam_matches_pytorch_grad_cam(
    ref: Reference, resnet: LoadedModel, photo_batch: torch.Tensor
) -> None:
    layer = "layer4" if ref.method == "cam" else "layer3"
    target = second_class(resnet, photo_batch)
    plan = plan_cam(resnet, method=ref.method, layers=[layer], targets=str(target))
    ours = compute_cam(resnet, photo_batch, plan, inputs=np.zeros((1, 64, 64, 3), np.uint8))
    expected = reference_cam(ref.cls, trainable_copy(resnet), layer, photo_batch, target)
    maps = ours.layers[0].maps
    assert maps.shape == (1, 1, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() > 0
    assert pearson(maps[0, 0], expected[0]) >= 0.99
    # `normalize` reproduces pytorch-grad-cam's [0, 1] output itself.
    normalized = compute_cam(
        resnet,
        photo_batch,
        plan_cam(resnet, method=ref.method, layers=[layer], targets=str(target), normalize=True),
        inputs=np.zeros((1, 64, 64, 3), np.uint8),
    )
    np.testing.assert_allclose(normalized.layers[0].maps[0, 0], expected[0], atol=1e-4)


@pytest.mark.parametrize("layer", ["layer1", "layer2", "layer3", "layer4"])
def test_eigencam_matches_pytorch_grad_cam_sign_included(
    layer: str, resnet: LoadedModel, photo_batch: torch.Tensor
) -> None:
    """A principal component's sign is arbitrary; EigenCAM takes the one LAPACK's SVD gives, as
    pytorch-grad-cam does, so the maps agree with it on every layer (a flipped sign would give
    a negative or near-zero correlation after the ReLU)."""
    batch = torch.cat([photo_batch, photo_batch.flip(3)])
    plan = plan_cam(resnet, method="eigencam", layers=[layer], normalize=True)
    ours = compute_cam(resnet, batch, plan, inputs=np.zeros((2, 64, 64, 3), np.uint8))
    expected = reference_cam(EigenCAM, trainable_copy(resnet), layer, batch, 0)
    for image in range(2):
        assert pearson(ours.layers[0].maps[image, 0], expected[image]) >= 0.99
        np.testing.assert_allclose(ours.layers[0].maps[image, 0], expected[image], atol=1e-3)


def test_ablationcam_matches_pytorch_grad_cam_where_activations_go_negative(
    resnet: LoadedModel, photo_batch: torch.Tensor
) -> None:
    """A convolution's output has negative values: pytorch-grad-cam then ablates with very
    negative values instead of zero, and layerscope follows it."""
    layer = "layer3.1.conv2"
    target = second_class(resnet, photo_batch)
    plan = plan_cam(resnet, method="ablationcam", layers=[layer], targets=str(target))
    ours = compute_cam(resnet, photo_batch, plan, inputs=np.zeros((1, 64, 64, 3), np.uint8))
    expected = reference_cam(AblationCAM, trainable_copy(resnet), layer, photo_batch, target)
    assert pearson(ours.layers[0].maps[0, 0], expected[0]) >= 0.99


def test_several_targets_and_layers_equal_single_runs(
    resnet: LoadedModel, photo_batch: torch.Tensor
) -> None:
    batch = torch.cat([photo_batch, photo_batch.flip(3)])
    both = cam_maps(resnet, batch, "gradcam", ("layer3", "layer4"), (3, 207, 3))
    assert both.targets.tolist() == [[3, 207, 3], [3, 207, 3]]
    for layer in ("layer3", "layer4"):
        assert both.maps[layer].shape == (2, 3, 64, 64)
        for slot, target in enumerate((3, 207)):
            single = cam_maps(resnet, batch, "gradcam", (layer,), (target,))
            torch.testing.assert_close(
                both.maps[layer][:, slot], single.maps[layer][:, 0], rtol=1e-4, atol=1e-6
            )


def test_default_target_is_each_images_top1(resnet: LoadedModel, photo_batch: torch.Tensor) -> None:
    batch = torch.cat([photo_batch, torch.zeros_like(photo_batch)])
    result = cam_maps(resnet, batch, "gradcam", ("layer4",), ())
    assert result.targets[:, 0].tolist() == resnet.module(batch).argmax(1).tolist()


def test_graph_is_cut_at_the_layer(resnet: LoadedModel, photo_batch: torch.Tensor) -> None:
    """Nothing before layer4 is in the graph: the backward pass reaches no convolution."""
    run = forward_to_layers(resnet.module, photo_batch, {"layer4": 1}, grad=True)
    leaf = run.activations["layer4"]
    assert leaf.is_leaf and leaf.requires_grad
    seen, stack = set(), [run.logits.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(parent for parent, _ in node.next_functions)
    names = {type(node).__name__ for node in seen}
    assert not any("Convolution" in name for name in names), names
    assert "AccumulateGrad" in names  # the leaf
    assert torch.is_grad_enabled()  # grad mode restored after the pass


def test_inplace_ops_after_the_layer_do_not_change_the_recorded_activation(
    resnet: LoadedModel, photo_batch: torch.Tensor
) -> None:
    """layer1.0.bn2's output is modified in place by `out += identity`; the record is not."""
    layer = "layer1.0.bn2"
    recorded = forward_to_layers(resnet.module, photo_batch, {layer: 1}, grad=True).activations[
        layer
    ]
    block = resnet.module.layer1[0]
    with torch.no_grad():
        stem = resnet.module.maxpool(
            resnet.module.relu(resnet.module.bn1(resnet.module.conv1(photo_batch)))
        )
        expected = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(stem)))))
    torch.testing.assert_close(recorded.detach(), expected)


class TransformerCase(NamedTuple):
    fixture: str
    layer: str


def _vit_reshape(tensor: torch.Tensor) -> torch.Tensor:
    return tensor[:, 1:, :].reshape(tensor.shape[0], 4, 4, -1).permute(0, 3, 1, 2)


def _swin_reshape(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2)


@pytest.mark.parametrize(
    "case, reshape",
    [
        (TransformerCase("tiny_vit", "encoder.layers.encoder_layer_1.ln_1"), _vit_reshape),
        (TransformerCase("tiny_swin", "features.3.0.norm1"), _swin_reshape),
    ],
    ids=["vit", "swin"],
)
@pytest.mark.parametrize("method, cls", [("gradcam", GradCAM), ("scorecam", ScoreCAM)])
def test_transformer_cams_match_reference_with_reshape_transform(
    case: TransformerCase,
    reshape,
    method: str,
    cls: type,
    photo: Image.Image,
    request: pytest.FixtureRequest,
) -> None:
    model: LoadedModel = request.getfixturevalue(case.fixture)
    batch = model_batch(model, [photo])
    target = second_class(model, batch)
    plan = plan_cam(model, method=method, layers=[case.layer], targets=str(target))
    ours = compute_cam(model, batch, plan, inputs=np.zeros((1, 32, 32, 3), np.uint8)).layers[0].maps
    expected = reference_cam(
        cls, trainable_copy(model), case.layer, batch, target, reshape_transform=reshape
    )
    assert ours.max() > 0
    assert pearson(ours[0, 0], expected[0]) >= 0.99


@pytest.mark.parametrize(
    "fixture, layer", [("tiny_vit", "encoder.layers.encoder_layer_1.ln_1"), ("resnet", "layer3")]
)
def test_ablation_broadcast_shortcut_equals_feeding_every_row(
    fixture: str, layer: str, photo: Image.Image, request: pytest.FixtureRequest
) -> None:
    """AblationCAM feeds the image once and lets the ablated rows broadcast past the layer;
    the weights equal those from feeding the image once per ablated channel."""
    model: LoadedModel = request.getfixturevalue(fixture)
    batch = model_batch(model, [photo])
    info = model.catalog.get(layer)
    run = forward_to_layers(model.module, batch, {layer: info.calls}, grad=False)
    output = run.activations[layer]
    targets = torch.tensor([[1, 2]])
    base = run.logits.gather(1, targets)
    weights = ablation_cam_weights(
        model.module,
        batch,
        layer=layer,
        calls=info.calls,
        output=output,
        layout=info.map_layout,
        targets=targets,
        base_scores=base,
        rows=16,
    )
    channels = info.map_layout.channels
    rows = output.repeat(channels, *([1] * (output.ndim - 1)))
    values = ablation_values(output[0], torch.arange(channels)).to(output.dtype)
    by_channel = rows.movedim(info.map_layout.channel_dim, 1)
    by_channel[torch.arange(channels), torch.arange(channels)] = values.view(
        -1, *[1] * (output.ndim - 2)
    )
    module = model.module
    handle = dict(module.named_modules())[layer].register_forward_hook(lambda _m, _i, _o: rows)
    try:
        with torch.inference_mode():
            logits = module(batch.expand(channels, -1, -1, -1))
    finally:
        handle.remove()
    expected = (base[0] - logits[:, [1, 2]]) / base[0]
    torch.testing.assert_close(weights[0], expected.T, rtol=1e-4, atol=1e-5)
    assert to_maps(output, info.map_layout).shape[1] == channels
