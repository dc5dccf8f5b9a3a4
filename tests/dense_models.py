"""Seeded torchvision segmentation and detection models with random weights, written as an
operator would: state_dict files next to a models file.

- `seg`: lraspp_mobilenet_v3_large, 5 classes, fed 96 x 96;
- `det`: fasterrcnn_mobilenet_v3_large_320_fpn, 5 classes (0 is background), fed 160 x 160.

The heads are re-drawn with larger weights so class scores differ clearly (no ties decide
an argmax or an order), and BatchNorm statistics come from seeded noise so maps are not flat.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file

from tests.helpers import IMAGENET_MEAN, IMAGENET_STD, toml_table

SEG_LABELS = ("background", "sky", "road", "tree", "car")
DET_LABELS = ("__background__", "person", "bicycle", "dog", "cat")


def _calibrate_batchnorm(backbone: torch.nn.Module, size: int) -> None:
    """Running statistics from seeded noise, so activations neither vanish nor explode
    through a deep randomly initialised backbone (its default statistics do not fit)."""
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
    backbone.train()
    with torch.no_grad():
        for _ in range(2):
            backbone(torch.randn(4, 3, size, size))
    backbone.eval()
    for norm in norms:
        norm.momentum = 0.1


def seeded_segmenter(seed: int = 11) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=len(SEG_LABELS)
    )
    _calibrate_batchnorm(model.backbone, 96)
    for conv in (model.classifier.low_classifier, model.classifier.high_classifier):
        torch.nn.init.normal_(conv.weight, std=0.5)
        torch.nn.init.normal_(conv.bias, std=0.5)
    return model.eval()


def seeded_detector(seed: int = 5) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=len(DET_LABELS), box_detections_per_img=8
    )
    _calibrate_batchnorm(model.backbone, 320)
    predictor = model.roi_heads.box_predictor
    torch.nn.init.normal_(predictor.cls_score.weight, std=0.02)
    torch.nn.init.normal_(predictor.cls_score.bias, std=0.5)
    torch.nn.init.normal_(predictor.bbox_pred.weight, std=0.01)
    return model.eval()


def _save(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def write_dense_config(folder: Path) -> Path:
    """A models TOML with `seg` and `det` (torchvision builders, weights from files)."""
    seg = _save(seeded_segmenter(), folder / "seg.safetensors")
    det = _save(seeded_detector(), folder / "det.safetensors")
    config = folder / "models.toml"
    config.write_text(
        toml_table(
            "models",
            name="seg",
            architecture="torchvision:lraspp_mobilenet_v3_large",
            weights=seg.name,
            input_size=[96, 96],
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            num_classes=len(SEG_LABELS),
            labels=SEG_LABELS,
        )
        + toml_table(
            "models",
            name="det",
            architecture="torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
            weights=det.name,
            input_size=[160, 160],
            num_classes=len(DET_LABELS),
            labels=DET_LABELS,
            options={"box_detections_per_img": 8},
        ),
        encoding="utf-8",
    )
    return config


class SegmentationOutput(torch.nn.Module):
    """pytorch-grad-cam's tutorial wrapper: the `out` scores as a tensor."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def trainable(module: torch.nn.Module) -> torch.nn.Module:
    """A copy for the references (they call backward and write .grad)."""
    module = copy.deepcopy(module)
    for param in module.parameters():
        param.requires_grad_(True)
    return module
