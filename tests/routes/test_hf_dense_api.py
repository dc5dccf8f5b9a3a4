"""Hugging Face segmentation and detection directories (`hf:`) over HTTP, checked against the
transformers models themselves: class maps against the argmax of the upsampled logits,
detections against the image processor's post_process_object_detection, Grad-CAM of a
region or a box against pytorch-grad-cam, gradients against Captum, feature maps against
forward hooks. The reference models are read again from the directories, apart from ours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import Saliency
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import (
    FasterRCNNBoxScoreTarget,
    SemanticSegmentationTarget,
)

from model_registry.config import load_config
from model_registry.spec import ModelSpec
from service.engine.attribution.methods.registry import cam_methods, gradient_methods
from service.engine.images import preprocess
from tests.helpers import files, load_npy, png
from tests.hf_dense_models import DETECTION_THRESHOLD
from tests.numerics import assert_float32_close
from tests.tiny_models import pearson

SEG_LAYER = "decode_head.linear_fuse"
DET_LAYER = "model.input_projection"


@pytest.fixture(scope="module")
def specs(hf_dense_models_file: Path) -> dict[str, ModelSpec]:
    return {spec.name: spec for spec in load_config(hf_dense_models_file)}


@pytest.fixture(scope="module")
def uploads(photo_images: dict[str, Image.Image]) -> list[Image.Image]:
    """The two sample photos, shrunk (3:2, so letterboxing and squashing both show)."""
    return [image.resize((150, 100), Image.Resampling.BILINEAR) for image in photo_images.values()]


def _post(client, path: str, images: list[Image.Image], **params):
    answer = client.post(f"/v1/models/{path}", params=params, files=files(*map(png, images)))
    assert answer.status_code == 200, answer.text
    return answer


def _served(client, spec: ModelSpec, images: list[Image.Image], endpoint: str, **params):
    """(the transformers model, its processor, the batch the server computes, the npy answer
    of `endpoint` for `images`)."""
    model, processor = _reference(spec)
    batch = preprocess(images, spec, torch.device("cpu"))
    answer = _post(client, f"{spec.name}/{endpoint}", images, format="npy", **params)
    return model, processor, batch, load_npy(answer.content)


def _reference(spec: ModelSpec) -> tuple[torch.nn.Module, object]:
    """The transformers model and image processor, read from the directory by transformers."""
    from transformers import (
        AutoImageProcessor,
        AutoModelForObjectDetection,
        AutoModelForSemanticSegmentation,
    )

    folder = spec.architecture.partition(":")[2]
    auto = AutoModelForSemanticSegmentation
    if spec.task == "detection":
        auto = AutoModelForObjectDetection
    return auto.from_pretrained(folder).eval(), AutoImageProcessor.from_pretrained(folder)


class UpsampledLogits(torch.nn.Module):
    """pytorch-grad-cam's segmentation wrapper: logits at the input size, as a tensor."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=x).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ProcessedDetections(torch.nn.Module):
    """The image processor's post_process_object_detection on the model's outputs: the
    boxes, labels and scores FasterRCNNBoxScoreTarget reads."""

    def __init__(self, model: torch.nn.Module, processor: object) -> None:
        super().__init__()
        self.model, self.processor = model, processor

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return self.processor.post_process_object_detection(
            self.model(pixel_values=x),
            threshold=DETECTION_THRESHOLD,
            target_sizes=[tuple(x.shape[-2:])] * x.shape[0],
        )


def test_tasks_and_preprocessing_come_from_the_directories(hf_dense_client) -> None:
    found = {m["name"]: m for m in hf_dense_client.get("/v1/models").json()["data"]}
    assert {name: found[name]["task"] for name in ("hseg", "hdet", "hcdet", "hyolos")} == {
        "hseg": "segmentation",
        "hdet": "detection",
        "hcdet": "detection",
        "hyolos": "detection",
    }
    detr = hf_dense_client.get("/v1/models/hdet").json()
    # DetrImageProcessor keeps the aspect ratio (short side 96): letterboxed to 96 x 96.
    assert detr["input_size"] == [96, 96] and detr["preprocessing"]["resize"] == "letterbox"
    assert detr["num_classes"] == 4 and detr["pretrained"] is True


def test_class_maps_are_the_hf_models_argmax(
    hf_dense_client, specs: dict[str, ModelSpec], uploads: list[Image.Image]
) -> None:
    spec = specs["hseg"]
    model, processor = _reference(spec)
    batch = preprocess(uploads, spec, torch.device("cpu"))
    with torch.inference_mode():
        expected = processor.post_process_semantic_segmentation(
            model(pixel_values=batch), target_sizes=[spec.input_size] * len(uploads)
        )
    class_map = load_npy(_post(hf_dense_client, "hseg/predict", uploads, format="npy").content)
    np.testing.assert_array_equal(class_map, torch.stack(expected).numpy())
    assert all(len(np.unique(m)) >= 3 for m in class_map)  # not degenerate


@pytest.mark.parametrize("name", ["hdet", "hcdet", "hyolos"])
def test_detections_are_the_image_processors(
    hf_dense_client, specs: dict[str, ModelSpec], uploads: list[Image.Image], name: str
) -> None:
    spec = specs[name]
    model, processor = _reference(spec)
    batch = preprocess(uploads, spec, torch.device("cpu"))
    with torch.inference_mode():
        expected = ProcessedDetections(model, processor)(batch)
    body = _post(hf_dense_client, f"{name}/predict", uploads).json()
    for found, reference in zip(body["detections"], expected, strict=True):
        assert len(found) == len(reference["scores"]) > 1
        order = reference["scores"].argsort(descending=True, stable=True)
        # The JSON rounds boxes to 0.01 px.
        np.testing.assert_allclose([d["score"] for d in found], reference["scores"][order], 1e-4)
        np.testing.assert_allclose(
            [d["box"] for d in found], reference["boxes"][order].numpy(), atol=0.006
        )
        assert [d["class_index"] for d in found] == reference["labels"][order].tolist()
        assert {d["label"] for d in found} <= {"person", "bicycle", "dog", "cat"}


def test_region_gradcam_equals_pytorch_grad_cam(
    hf_dense_client, specs: dict[str, ModelSpec], uploads: list[Image.Image]
) -> None:
    model, _, batch, ours = _served(
        hf_dense_client,
        specs["hseg"],
        uploads,
        "cam",
        layer=SEG_LAYER,
        target="sky",
        region="predicted",
    )
    wrapped = UpsampledLogits(model)
    with torch.no_grad():
        masks = (wrapped(batch).argmax(dim=1) == 1).float().numpy()
    layer = dict(model.named_modules())[SEG_LAYER]
    with GradCAM(model=wrapped, target_layers=[layer]) as cam:
        theirs = cam(input_tensor=batch, targets=[SemanticSegmentationTarget(1, m) for m in masks])
    for image in range(len(uploads)):
        r = pearson(ours[image], theirs[image])
        assert r >= 0.99, (image, r)


def test_box_gradcam_equals_pytorch_grad_cam(
    hf_dense_client, specs: dict[str, ModelSpec], uploads: list[Image.Image]
) -> None:
    spec = specs["hdet"]
    model, processor = _reference(spec)
    batch = preprocess(uploads[:1], spec, torch.device("cpu"))
    wrapped = ProcessedDetections(model, processor)
    with torch.inference_mode():
        found = wrapped(batch)[0]
    second = int(found["scores"].argsort(descending=True, stable=True)[1])
    ours = load_npy(
        _post(
            hf_dense_client, "hdet/cam", uploads[:1], layer=DET_LAYER, detection="1", format="npy"
        ).content
    )
    layer = dict(model.named_modules())[DET_LAYER]
    target = FasterRCNNBoxScoreTarget(
        labels=[int(found["labels"][second])], bounding_boxes=[found["boxes"][second].numpy()]
    )
    with GradCAM(model=wrapped, target_layers=[layer]) as cam:
        theirs = cam(input_tensor=batch, targets=[target])
    assert float(np.abs(theirs).max()) > 0
    r = pearson(ours[0], theirs[0])
    assert r >= 0.99, r


def test_region_gradients_equal_captum(
    hf_dense_client, specs: dict[str, ModelSpec], uploads: list[Image.Image]
) -> None:
    model, _, batch, ours = _served(
        hf_dense_client, specs["hseg"], uploads, "gradients", target="road", region="all"
    )
    wrapped = UpsampledLogits(model)

    def region_score(x: torch.Tensor) -> torch.Tensor:
        return wrapped(x)[:, 2].sum(dim=(1, 2))

    theirs = Saliency(region_score).attribute(batch.clone(), abs=False).detach()
    torch.testing.assert_close(torch.from_numpy(ours), theirs, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(("name", "layer"), [("hseg", SEG_LAYER), ("hdet", DET_LAYER)])
def test_feature_maps_equal_forward_hooks(
    hf_dense_client, specs: dict[str, ModelSpec], uploads: list[Image.Image], name, layer
) -> None:
    spec = specs[name]
    model, _ = _reference(spec)
    batch = preprocess(uploads, spec, torch.device("cpu"))
    seen: list[torch.Tensor] = []
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda _m, _i, out: seen.append(out.detach())
    )
    try:
        with torch.inference_mode():
            model(pixel_values=batch)
    finally:
        handle.remove()
    maps = load_npy(
        _post(
            hf_dense_client,
            f"{name}/feature-maps",
            uploads,
            layers=layer,
            channels="all",
            format="npy",
        ).content
    )
    # The server runs another batch composition (or kernel) than this reference: float32
    # rounding of another summation order, see tests/numerics.py.
    assert_float32_close(maps, seen[0])


@pytest.mark.parametrize(
    ("name", "layer", "target"),
    [("hseg", SEG_LAYER, {"target": "sky"}), ("hdet", DET_LAYER, {"detection": "0"})],
)
def test_every_method_explains_hf_dense_models(
    hf_dense_client, uploads: list[Image.Image], name: str, layer: str, target: dict
) -> None:
    """Every CAM (but `cam`, which needs a pooled linear classifier and says so) and every
    gradient method answers finite, non-zero maps for a region or a box."""
    for method in cam_methods():
        params = {"method": method.name, "format": "npy", **target}
        if method.uses_layer:
            params["layer"] = layer
        answer = hf_dense_client.post(
            f"/v1/models/{name}/cam", params=params, files=files(png(uploads[0]))
        )
        if method.name == "cam":
            assert answer.status_code == 422 and answer.json()["field"] == "layer"
            continue
        if method.name in ("rollout", "legrad"):  # they need a ViT
            assert answer.status_code == 422
            continue
        if method.name == "finercam":  # it compares classifier logits, and says so
            assert answer.status_code == 422 and "finercam compares" in answer.text
            continue
        refused_on_detectors = {
            "shapleycam": "second derivatives",  # CPU attention has none
            "fullgrad": "proposals cut it",  # it needs a graph through the whole model
        }
        if name == "hdet" and method.name in refused_on_detectors:
            assert answer.status_code == 422, (method.name, answer.text)
            assert refused_on_detectors[method.name] in answer.json()["detail"]
            continue
        assert answer.status_code == 200, (method.name, answer.text)
        maps = load_npy(answer.content)
        assert np.isfinite(maps).all() and float(maps.max()) > 0, method.name
    for method in gradient_methods():
        params = {"method": method.name, "format": "npy", **target}
        if method.name == "guided-gradcam":
            params["layer"] = layer
        answer = hf_dense_client.post(
            f"/v1/models/{name}/gradients", params=params, files=files(png(uploads[0]))
        )
        assert answer.status_code == 200, (method.name, answer.text)
        values = load_npy(answer.content)
        assert np.isfinite(values).all() and float(np.abs(values).max()) > 0, method.name
