"""Layer-wise relevance propagation through zennit, on a copy of the shared model.

zennit's canonizers merge BatchNorm into the layer before it and give torchvision's ResNet
blocks a `Sum` module for their skip connection (so the sum gets its own rule, which is
where Captum's LRP goes wrong: captum issues 546, 712, 1035); its composites then register
a rule hook on every layer. Both change modules, so they run on a deep copy and the shared
model is never touched: the canonized copy is made once per model and device and reused
(`canonized.py`), the rules are registered on it per request and removed in `finally`.
The rules run as autograd Functions (`ruled.py`): the same relevance as zennit's hooks,
without computing each layer's plain backward that zennit's hooks then throw away.
https://github.com/chr5tphr/zennit
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat
from zennit.core import Composite
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from service.engine.attribution.canonized import CanonizedCopies
from service.engine.attribution.ruled import RuledLayers

# The request's rule -> zennit's composite of that name.
RULES = ("epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1", "epsilon-plus")

# Layers a composite has a rule for (or passes through unchanged, as zennit does for pooling
# by maximum and for shape-only layers); any other layer holding parameters has no rule.
_RULED = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
)

COPIES = CanonizedCopies()  # the canonized copies of the shared models, reused by requests


def canonizers(module: nn.Module) -> list[object]:
    """zennit's ResNetCanonizer for torchvision ResNets, else its VGGCanonizer (BatchNorm
    merged into the convolution or linear layer right before it)."""
    if any(isinstance(child, BasicBlock | Bottleneck) for child in module.modules()):
        return [ResNetCanonizer()]
    return [VGGCanonizer()]


def canonize(module: nn.Module) -> None:
    """Apply `canonizers(module)` to `module` for good (on a copy made for them)."""
    for canonizer in canonizers(module):
        canonizer.apply(module)


def composite(
    rule: str, canonized: Sequence[object], low: torch.Tensor, high: torch.Tensor
) -> Composite:
    """zennit's composite for `rule`; `low`/`high` bound the model input (epsilon-gamma-box).
    `canonized`: canonizers the composite applies on registering (none on a copy that
    `canonize` already canonized)."""
    rules: dict[str, Callable[[], Composite]] = {
        "epsilon-plus-flat": lambda: EpsilonPlusFlat(canonizers=list(canonized)),
        "epsilon-gamma-box": lambda: EpsilonGammaBox(
            low=low, high=high, canonizers=list(canonized)
        ),
        "epsilon-alpha2-beta1": lambda: EpsilonAlpha2Beta1(canonizers=list(canonized)),
        "epsilon-plus": lambda: EpsilonPlus(canonizers=list(canonized)),
    }
    return rules[rule]()


def unruled_layer(module: nn.Module) -> tuple[str, str] | None:
    """(name, type) of the first layer with parameters that no LRP rule covers, or None.

    Attention, layer norms, embeddings and parameters held outside a layer (a ViT's class
    token) have no rule in zennit's composites: the relevance through them would be a plain
    gradient, not LRP.
    """
    named = list(module.named_modules())
    leaves_first = sorted(named, key=lambda item: next(item[1].children(), None) is not None)
    for name, child in leaves_first:
        if child._parameters and not isinstance(child, _RULED):
            return name or "(the model itself)", type(child).__name__
    return None


def input_bounds(
    mean: Sequence[float], std: Sequence[float], channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lowest and highest normalized input, per channel: pixels 0 and 1 through mean/std."""
    means = torch.tensor(list(mean) * (channels // len(mean)), dtype=torch.float32)
    stds = torch.tensor(list(std) * (channels // len(std)), dtype=torch.float32)
    return ((0 - means) / stds).view(1, -1, 1, 1), ((1 - means) / stds).view(1, -1, 1, 1)


@contextlib.contextmanager
def ruled_copy(
    module: nn.Module,
    device: torch.device,
    *,
    rule: str,
    bounds: tuple[torch.Tensor, torch.Tensor],
) -> Iterator[nn.Module]:
    """The canonized copy of `module` on `device` (`COPIES`) with `rule`'s rules registered,
    for the block; the rules are removed in `finally`.

    As zennit's `Gradient` attributor: the gradient of a score of this copy's output w.r.t.
    its input (`relevance`) is the relevance the rules propagate. Without gradients (or for
    an input that needs none) the copy computes the model's output, up to float rounding
    (its BatchNorms are merged into the layers before them).
    """
    low, high = (bound.to(device) for bound in bounds)
    with COPIES.lend(module, device, canonize) as local:
        ruled = RuledLayers(composite(rule, (), low, high), local)
        try:
            yield local
        finally:
            ruled.remove()


def relevance(x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The relevance of every element of `x` (a leaf that requires grad, given to a
    `ruled_copy`) for `scores` (one per row of `x`, from that copy's output)."""
    (found,) = torch.autograd.grad(scores.sum(), x)
    return found.detach()
