"""Small seeded models of every source, written to a folder as an operator would.

- `tcnn`: timm resnet18 (CNN) at 64 x 64; `tvit`, `tdeit`: tiny timm ViT and distilled DeiT
  at 32 x 32 (4 x 4 patches, 1 and 2 prefix tokens); `tswin`: a tiny timm Swin at 64 x 64;
- `hvit`: a Hugging Face ViT from a small ViTConfig, written with save_pretrained;
- `py`: the operator's own module (residual blocks, GELU) built by a Python factory;
- `tv`: torchvision resnet18 at 64 x 64 with seeded random weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.helpers import factory_entry, resnet18_entry, toml_table

FACTORY = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class Net(nn.Module):
    def __init__(self, width=8, classes=4):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.Sequential(Block(width), Block(width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def make(width=8, classes=4):
    torch.manual_seed(3)
    return Net(width, classes)


def not_a_module():
    return 3
"""

TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}
TINY_SWIN = {
    "img_size": 64,
    "window_size": 4,
    "embed_dim": 16,
    "depths": [1, 1],
    "num_heads": [1, 2],
}


def _timm(name: str, model: str, options: dict) -> str:
    return toml_table(
        "models", name=name, architecture=f"timm:{model}", num_classes=5, options=options
    )


MODELS = (
    toml_table(
        "models", name="tcnn", architecture="timm:resnet18", input_size=[64, 64], num_classes=5
    )
    + _timm("tvit", "vit_tiny_patch16_224", TINY_VIT)
    + _timm("tdeit", "deit_tiny_distilled_patch16_224", TINY_VIT)
    + _timm("tswin", "swin_tiny_patch4_window7_224", TINY_SWIN)
    + toml_table("models", name="hvit", architecture="hf:hf-vit")
    + factory_entry("py", options={"width": 6, "classes": 3})
    + resnet18_entry("tv", 10)
)

HF_LABELS = ("cat", "dog", "fish")


def write_hf_vit(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer ViT (32 x 32 input, 8 x 8 patches) and its processor, via save_pretrained."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    shape = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        **shape,
        num_labels=len(HF_LABELS),
        id2label=dict(enumerate(HF_LABELS)),
        label2id={label: i for i, label in enumerate(HF_LABELS)},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTForImageClassification(config)
    model.save_pretrained(folder)
    ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]
    ).save_pretrained(folder)
    return folder


def write_source_models(folder: Path) -> Path:
    """The models file and everything it names; returns the models file."""
    (folder / "factory.py").write_text(FACTORY)
    write_hf_vit(folder / "hf-vit")
    path = folder / "models.toml"
    path.write_text(MODELS)
    return path
