"""Detections of a two-stage detector with gradients through their own box-head rows only
(`rcnn_heads.rows_with_grad`): the same detections, the same gradients as a graph through
every proposal, and the heads' graph built for the detections alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from PIL import Image
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_gradients
from service.engine.attribution.graph import forward_to_layers
from service.engine.attribution.plan import plan_gradients
from service.engine.attribution.target_objects import BoxTarget, batch_rows
from service.engine.dense.outputs import detections
from tests.dense_models import trainable
from tests.tiny_models import model_batch

LAYER = "backbone.fpn.layer_blocks.0"


@pytest.fixture(scope="module")
def detector(dense_models: dict[str, LoadedModel]) -> LoadedModel:
    return dense_models["det"]


@pytest.fixture(scope="module")
def batch(detector: LoadedModel, photo_images: dict[str, Image.Image]) -> torch.Tensor:
    return model_batch(detector, [photo_images["china.jpg"], photo_images["flower.jpg"]])


def _full_graph(module: torch.nn.Module, batch: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """The reference: a graph from the layer's output through every proposal."""
    kept: dict[str, torch.Tensor] = {}

    def leaf(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        kept["layer"] = output.detach().requires_grad_(True)
        return kept["layer"].clone()

    handle = module.get_submodule(LAYER).register_forward_hook(leaf)
    try:
        with torch.enable_grad():
            output = module(batch)
    finally:
        handle.remove()
    return output, kept["layer"]


def _targets(found: list[dict[str, torch.Tensor]]) -> BoxTarget:
    """Each image's first two detections, by their own labels and boxes moved by 5% of their
    size (IoU about 0.8). Not the boxes themselves: at IoU 1 every min and max of the overlap
    ties, a tie splits its gradient, and whether a detection equals its reference to the last
    bit (and so ties) depends on the CPU's kernels."""
    labels = torch.stack([d["labels"][:2] for d in found]).detach()
    boxes = torch.stack([d["boxes"][:2] for d in found]).detach().float()
    size = (boxes[..., 2:] - boxes[..., :2]).repeat(1, 1, 2)
    return BoxTarget(labels.long(), boxes + 0.05 * size)


def test_detections_and_gradients_equal_a_graph_through_every_proposal(
    detector: LoadedModel, batch: torch.Tensor
) -> None:
    reference, reference_leaf = _full_graph(detector.module, batch)
    run = forward_to_layers(detector.module, batch, {LAYER: 1}, grad=True)
    ours, theirs = detections(run.logits), detections(reference)
    assert all(d["labels"].numel() >= 2 for d in theirs)
    for mine, full in zip(ours, theirs, strict=True):
        assert torch.equal(mine["labels"], full["labels"])
        torch.testing.assert_close(mine["boxes"], full["boxes"], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(mine["scores"], full["scores"], rtol=1e-5, atol=1e-6)
        assert mine["scores"].requires_grad
    target = _targets(theirs)
    rows = batch_rows(target)
    for t in range(target.count):
        (fast,) = torch.autograd.grad(
            target.scores(run.logits, rows)[:, t].sum(), run.activations[LAYER], retain_graph=True
        )
        (full,) = torch.autograd.grad(
            target.scores(reference, rows)[:, t].sum(), reference_leaf, retain_graph=True
        )
        assert float(full.abs().max()) > 0
        torch.testing.assert_close(fast, full, rtol=1e-3, atol=1e-4 * float(full.abs().max()))


def test_the_box_head_builds_a_graph_for_the_detections_only(
    detector: LoadedModel, batch: torch.Tensor
) -> None:
    calls: list[tuple[int, bool]] = []

    def record(_module: torch.nn.Module, inputs: Any, _output: Any) -> None:
        calls.append((int(inputs[0].shape[0]), torch.is_grad_enabled()))

    handle = detector.module.roi_heads.box_head.register_forward_hook(record)
    try:
        run = forward_to_layers(detector.module, batch, {LAYER: 1}, grad=True)
    finally:
        handle.remove()
    found = detections(run.logits)
    proposals = calls[0][0]
    assert calls[0] == (proposals, False)  # every proposal of both images, no graph
    assert proposals > sum(d["labels"].numel() for d in found)
    assert calls[1:] == [(sum(d["labels"].numel() for d in found), True)]


def test_a_layer_inside_the_heads_keeps_the_whole_graph(
    detector: LoadedModel, batch: torch.Tensor
) -> None:
    layer = "roi_heads.box_head.fc6"
    run = forward_to_layers(detector.module, batch, {layer: 1}, grad=True)
    found = detections(run.logits)
    (gradient,) = torch.autograd.grad(found[0]["scores"][0], run.activations[layer])
    assert float(gradient.abs().max()) > 0
    assert torch.is_grad_enabled()  # the pass left grad mode as it found it


def test_vanilla_gradients_of_a_detection_equal_captum(
    detector: LoadedModel, batch: torch.Tensor
) -> None:
    """Input gradients go through the detections' rows too, and equal Captum's Saliency of
    pytorch-grad-cam's FasterRCNNBoxScoreTarget on a graph through every proposal."""
    one = batch[:1]
    plan = plan_gradients(detector, method="vanilla", detection="0")
    pixels = np.zeros((1, *one.shape[-2:], 3), np.uint8)
    ours = compute_gradients(detector, one, plan, inputs=pixels)
    module = trainable(detector.module)
    with torch.no_grad():
        found = module(one)[0]
    target = FasterRCNNBoxScoreTarget(
        labels=[int(found["labels"][0])], bounding_boxes=[found["boxes"][0].numpy()]
    )
    theirs = Saliency(lambda x: torch.stack([target(out) for out in module(x)])).attribute(
        one.clone(), abs=False
    )
    assert float(theirs.abs().max()) > 0
    torch.testing.assert_close(
        torch.from_numpy(ours.values[:, 0]),
        theirs.detach(),
        rtol=1e-3,
        atol=1e-3 * float(theirs.abs().max()),
    )
