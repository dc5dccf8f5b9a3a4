"""Tiny seeded Hugging Face segmentation and detection models, written with save_pretrained
(config, weights and image processor) next to a models file, as an operator would:

- `hseg`: SegFormer (2 stages, 8 and 16 channels), 5 classes, processor at 64 x 64;
- `hdet`: DETR on a small ResNet backbone (stride 8; no timm, nothing pretrained), 4 classes and a
  "no object" class, 12 queries, processor short side 96 (so letterboxed to 96 x 96);
- `hcdet`: Conditional DETR (sigmoid scores, no "no object" class) on the same backbone;
- `hyolos`: YOLOS from a 2-layer ViT config at 64 x 64 with 6 detection tokens.

The class heads are re-drawn with larger weights so scores differ clearly (no ties decide
an argmax, an order or a threshold). Tasks come from config.json's `architectures`.
"""

from __future__ import annotations

from pathlib import Path

import torch

SEG_LABELS = ("background", "sky", "road", "tree", "car")
DET_LABELS = ("person", "bicycle", "dog", "cat")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DETECTION_THRESHOLD = 0.3


def _labels(labels: tuple[str, ...]) -> dict[str, object]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def _redraw(model: torch.nn.Module) -> None:
    """Weights of unit gain (transformers' own initialisation, std 0.02, makes every query and
    pixel score alike) and unit-variance embeddings, so queries and pixels differ."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            fan_in = module.weight[0].numel()
            torch.nn.init.normal_(module.weight, std=fan_in**-0.5)
        elif isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight)
    for name, param in model.named_parameters():
        if name.endswith(("detection_tokens", "position_embeddings")):  # YOLOS
            torch.nn.init.normal_(param)


def _backbone() -> object:
    from transformers import ResNetConfig

    return ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], out_features=["stage2"]
    )


def _detr_sizes() -> dict[str, object]:
    return {
        "use_timm_backbone": False,
        "use_pretrained_backbone": False,
        "backbone_config": _backbone(),
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "decoder_ffn_dim": 32,
        "num_queries": 12,
    }


def write_segformer(folder: Path, *, seed: int = 3) -> Path:
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    torch.manual_seed(seed)
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        **_labels(SEG_LABELS),
    )
    model = SegformerForSemanticSegmentation(config).eval()
    _redraw(model)
    torch.nn.init.normal_(model.decode_head.classifier.weight, std=1.0)
    torch.nn.init.normal_(model.decode_head.classifier.bias, std=0.5)
    model.save_pretrained(folder)
    SegformerImageProcessor(
        size={"height": 64, "width": 64}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    ).save_pretrained(folder)
    return folder


def _detr_like(model: torch.nn.Module, folder: Path, processor: type) -> Path:
    _redraw(model)
    # Stride 8 features and spread query embeddings: the queries attend to different places.
    torch.nn.init.normal_(model.model.query_position_embeddings.weight, std=3.0)
    torch.nn.init.normal_(model.bbox_predictor.layers[-1].weight, std=0.3)
    torch.nn.init.normal_(model.class_labels_classifier.weight, std=0.5)
    torch.nn.init.normal_(model.class_labels_classifier.bias, std=0.05)
    model.save_pretrained(folder)
    processor(
        size={"shortest_edge": 96, "longest_edge": 160},
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    ).save_pretrained(folder)
    return folder


def write_detr(folder: Path, *, seed: int = 4) -> Path:
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor

    torch.manual_seed(seed)
    config = DetrConfig(**_detr_sizes(), **_labels(DET_LABELS))
    return _detr_like(DetrForObjectDetection(config).eval(), folder, DetrImageProcessor)


def write_conditional_detr(folder: Path, *, seed: int = 6) -> Path:
    from transformers import (
        ConditionalDetrConfig,
        ConditionalDetrForObjectDetection,
        ConditionalDetrImageProcessor,
    )

    torch.manual_seed(seed)
    config = ConditionalDetrConfig(**_detr_sizes(), **_labels(DET_LABELS))
    model = ConditionalDetrForObjectDetection(config).eval()
    return _detr_like(model, folder, ConditionalDetrImageProcessor)


def write_yolos(folder: Path, *, seed: int = 8) -> Path:
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    torch.manual_seed(seed)
    config = YolosConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=[64, 64],
        patch_size=16,
        num_detection_tokens=6,
        **_labels(DET_LABELS),
    )
    model = YolosForObjectDetection(config).eval()
    _redraw(model)
    torch.nn.init.normal_(model.class_labels_classifier.layers[-1].weight, std=0.5)
    torch.nn.init.normal_(model.class_labels_classifier.layers[-1].bias, std=0.05)
    model.save_pretrained(folder)
    YolosImageProcessor(
        size={"height": 64, "width": 64}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    ).save_pretrained(folder)
    return folder


def write_hf_dense_config(folder: Path) -> Path:
    """A models TOML with `hseg`, `hdet`, `hcdet` and `hyolos` (hf: directories)."""
    write_segformer(folder / "hf-segformer")
    write_detr(folder / "hf-detr")
    write_conditional_detr(folder / "hf-cdetr")
    write_yolos(folder / "hf-yolos")
    threshold = f"options = {{ detection_threshold = {DETECTION_THRESHOLD} }}"
    config = folder / "models.toml"
    config.write_text(
        f"""
[[models]]
name = "hseg"
architecture = "hf:hf-segformer"

[[models]]
name = "hdet"
architecture = "hf:hf-detr"
{threshold}

[[models]]
name = "hcdet"
architecture = "hf:hf-cdetr"
task = "detection"
{threshold}

[[models]]
name = "hyolos"
architecture = "hf:hf-yolos"
{threshold}
""",
        encoding="utf-8",
    )
    return config
