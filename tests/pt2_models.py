"""A small seeded residual CNN and its `torch.export` program, written as an operator would.

The blocks call one ReLU twice (as torchvision's BasicBlock does) and hold batch norms
with non-trivial running statistics, so the program's layers, calls and weights all count.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

SIZE = 32
CLASSES = 4


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class ResidualNet(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.act = nn.GELU()
        self.layer1 = nn.Sequential(Block(width), Block(width))
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.layer2 = Block(2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.down(self.layer1(self.act(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


def residual_net(seed: int = 5) -> ResidualNet:
    """Seeded weights and batch-norm statistics, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResidualNet()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def export_to(model: nn.Module, path: Path, *, dynamic_batch: bool = True) -> Path:
    """`model` (already in eval mode) saved with torch.export.save."""
    example = (torch.zeros(2, 3, SIZE, SIZE),)
    shapes = ({0: torch.export.Dim("batch", max=1024)},) if dynamic_batch else None
    torch.export.save(torch.export.export(model, example, dynamic_shapes=shapes), path)
    return path


def pt2_entry(name: str, path: Path, extra: str = "") -> str:
    return (
        f'[[models]]\nname = "{name}"\narchitecture = "pt2:{path}"\n'
        f"mean = [0.5, 0.4, 0.3]\nstd = [0.25, 0.25, 0.25]\n{extra}\n"
    )
