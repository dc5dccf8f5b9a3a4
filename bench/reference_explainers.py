"""The bench's five evaluation methods as a notebook computes them without layerscope: the
reference libraries' own explainers, with layerscope's defaults for the digits model.

- gradcam, scorecam: pytorch-grad-cam's GradCAM and ScoreCAM on the plan's layer, with
  ClassifierOutputTarget (scorecam's masked inputs in grad-cam's batches of 16);
- integrated-gradients: Captum's IntegratedGradients, the plan's steps, zero baseline;
- occlusion: Captum's Occlusion, the plan's window and stride, zero baseline,
  perturbations_per_eval = the plan's batch;
- lrp: zennit's Gradient with EpsilonPlusFlat and its BatchNorm-merging canonizer.

Each gives float32 maps [B, 1, H, W] for (inputs [B, C, H, W], classes [B]), the shape
Quantus's `explain_func` returns.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")  # grad-cam's ScoreCAM draws a progress bar

Explain = Callable[[torch.Tensor, torch.Tensor], np.ndarray]


def _gradcam(kind: str, module: torch.nn.Module, layer: str) -> Explain:
    from pytorch_grad_cam import GradCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # A notebook's model has trainable weights; layerscope's are frozen, which leaves
    # grad-cam's hooked activations without a graph.
    module = copy.deepcopy(module).requires_grad_(True)
    cam = (GradCAM if kind == "gradcam" else ScoreCAM)(
        model=module, target_layers=[module.get_submodule(layer)]
    )

    def explain(inputs: torch.Tensor, classes: torch.Tensor) -> np.ndarray:
        targets = [ClassifierOutputTarget(int(c)) for c in classes]
        return cam(input_tensor=inputs, targets=targets)[:, None].astype(np.float32)

    return explain


def _integrated(module: torch.nn.Module, steps: int) -> Explain:
    from captum.attr import IntegratedGradients

    method = IntegratedGradients(module)

    def explain(inputs: torch.Tensor, classes: torch.Tensor) -> np.ndarray:
        values = method.attribute(inputs, target=classes, n_steps=steps)
        return values.detach().sum(dim=1, keepdim=True).numpy()

    return explain


def _occlusion(module: torch.nn.Module, window: int, stride: int, batch: int) -> Explain:
    from captum.attr import Occlusion

    method = Occlusion(module)

    def explain(inputs: torch.Tensor, classes: torch.Tensor) -> np.ndarray:
        channels = inputs.shape[1]
        values = method.attribute(
            inputs,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            target=classes,
            baselines=0.0,
            perturbations_per_eval=batch,
        )
        return values.detach().sum(dim=1, keepdim=True).numpy()

    return explain


def _lrp(module: torch.nn.Module) -> Explain:
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlusFlat

    attributor = Gradient(
        model=copy.deepcopy(module),
        composite=EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()]),
    )

    def explain(inputs: torch.Tensor, classes: torch.Tensor) -> np.ndarray:
        def one_hot(output: torch.Tensor) -> torch.Tensor:  # each picture's class
            return torch.nn.functional.one_hot(classes, output.shape[1]).to(output.dtype)

        _, relevance = attributor(inputs, one_hot)
        return relevance.detach().sum(dim=1, keepdim=True).numpy()

    return explain


def reference_explainer(method: str, module: torch.nn.Module, parameters: dict) -> Explain:
    """The reference explainer of one of the bench's methods, set up once."""
    if method in ("gradcam", "scorecam"):
        return _gradcam(method, module, parameters["layer"])
    if method == "integrated-gradients":
        return _integrated(module, parameters["steps"])
    if method == "occlusion":
        return _occlusion(module, parameters["window"], parameters["stride"], parameters["batch"])
    if method == "lrp":
        return _lrp(module)
    raise ValueError(f"no reference explainer for {method}")
