"""Model-randomization sanity check (Adebayo et al. 2018, https://arxiv.org/abs/1810.03292).

A map that explains the model must change when the model's top layers are re-initialized.
The check runs on a deep copy (the shared model is never touched): the last `count`
modules with parameters, in forward order, get `reset_parameters()` under a fixed seed
(a cascading randomization from the logits down), and the method runs again on the same
inputs for the same targets. Spearman rank correlation between the two maps tells how much
of the map survives: near 1 means the map does not depend on those layers.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from scipy.stats import spearmanr

from model_registry.registry import LoadedModel

RANDOMIZATION_SEED = 0


def parametrized_layers(model: LoadedModel) -> list[str]:
    """Modules that own parameters and can re-initialize them, in forward order."""
    modules = dict(model.module.named_modules())
    names = [
        info.name
        for info in sorted(model.catalog, key=lambda lay: lay.order)
        if info.calls
        and hasattr(modules[info.name], "reset_parameters")
        and any(True for _ in modules[info.name].parameters(recurse=False))
    ]
    return names


def randomized_copy(
    model: LoadedModel, count: int, *, seed: int = RANDOMIZATION_SEED
) -> tuple[LoadedModel, list[str]]:
    """A copy of `model` with its last `count` parametrized layers re-initialized.

    Returns:
        The copy (same spec and catalog, its own module) and the re-initialized layer names,
        top first.
    """
    module = copy.deepcopy(model.module)
    for sub in module.modules():  # hooks of concurrent requests must not travel with the copy
        sub._forward_hooks.clear()
        sub._forward_pre_hooks.clear()
        sub._backward_hooks.clear()
    chosen = parametrized_layers(model)[-count:][::-1]
    modules = dict(module.named_modules())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            for name in chosen:
                modules[name].reset_parameters()
    for param in module.parameters():
        param.requires_grad_(False)
    module.eval()
    return dataclasses.replace(model, module=module), chosen


def rank_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman correlation of paired maps [..., H, W] -> [...]; NaN where a map is constant."""
    lead = first.shape[:-2]
    a = first.reshape(-1, first.shape[-2] * first.shape[-1])
    b = second.reshape(-1, second.shape[-2] * second.shape[-1])
    out = np.full(a.shape[0], np.nan)
    for i in range(a.shape[0]):
        if np.ptp(a[i]) > 0 and np.ptp(b[i]) > 0:
            out[i] = spearmanr(a[i], b[i]).statistic
    return out.reshape(lead)
