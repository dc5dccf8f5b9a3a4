"""The cascading model randomization of Adebayo et al. 2018 (https://arxiv.org/abs/1810.03292),
as Quantus's MPRT runs it (`PyTorchModel.get_random_layer_generator(order="top_down")`).

One deep copy of the module is made (its hooks dropped, gradients off, eval mode); its
parametrized layers are re-initialized one more at a time, from the top: at depth d the
top d layers are random. As in Quantus, the generator is seeded with `seed + 1` before each
`reset_parameters()`, but inside `torch.random.fork_rng`, so the global RNG is left alone.
The layer order is the forward order of the layer catalog (`sanity.parametrized_layers`),
where Quantus takes `named_modules()` order: the two agree for sequential models. The shared
model is never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn

CASCADE_SEED = 42  # Quantus MPRT's default seed


def bare_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` without hooks (a concurrent request's must not travel along),
    gradients off, in eval mode."""
    twin = copy.deepcopy(module)
    for sub in twin.modules():
        sub._forward_hooks.clear()
        sub._forward_pre_hooks.clear()
        sub._backward_hooks.clear()
    for param in twin.parameters():
        param.requires_grad_(False)
    return twin.eval()


def randomized_copies(
    module: nn.Module, layers: Sequence[str], *, seed: int = CASCADE_SEED
) -> Iterator[tuple[int, str, nn.Module]]:
    """(depth, the layer randomized last, the copy) for depth 1..len(layers).

    `layers` are module names, top first (`EvalBatch.randomizable`). The same copy is
    yielded each time, one more layer randomized: use it before advancing the iterator.
    """
    twin = bare_copy(module)
    modules = dict(twin.named_modules())
    for depth, name in enumerate(layers, start=1):
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed + 1)
            modules[name].reset_parameters()
        for param in modules[name].parameters(recurse=False):
            param.requires_grad_(False)
        yield depth, name, twin
