"""A forward pass whose autograd graph starts at the hooked layers, and its gradients.

Grad-CAM needs d(score)/d(activation) only, so nothing before the activation needs a
graph: the prefix runs under `no_grad`, the shallowest hooked layer's output becomes a
fresh leaf that requires grad, grad mode is switched on for the rest of the forward pass,
and `torch.autograd.grad` runs from the class scores back to the leaf and no further. No
`.backward()`, so no `param.grad` is ever written, and the model's own modules, flags and
parameters stay untouched (hooks are thread-owned and removed on exit, see `capture.hooked`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model_registry.errors import InvalidInput
from service.engine.attribution.rcnn_heads import rows_with_grad
from service.engine.capture import hooked


@dataclass(frozen=True)
class LayerPass:
    """The model's output (logits for a classifier) and the hooked layers' outputs (last call
    of each) from one forward pass.

    With `grad=True` the outputs are part of a graph that starts at the shallowest layer.
    """

    logits: Any
    activations: dict[str, torch.Tensor]


def forward_to_layers(
    module: nn.Module, batch: torch.Tensor, calls: Mapping[str, int], *, grad: bool
) -> LayerPass:
    """Run the whole model once, recording the named layers' outputs.

    Args:
        module: the shared model (left as found).
        batch: the preprocessed inputs [B, C, H, W]; never made to require grad.
        calls: layer name -> how often it runs per forward pass; the last call is kept.
        grad: build a graph from the first hooked output to the logits.

    The graph starts at the first hooked output, or at any hooked output that does not
    depend on an earlier one (a parallel branch). Every recorded output is handed on as a
    clone, so in-place operations further down (`out += identity` in a ResNet block,
    in-place ReLUs) cannot change what was recorded.
    """
    activations: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            if not isinstance(output, torch.Tensor):
                raise InvalidInput(f"layer '{name}' does not output a single tensor", field="layer")
            if grad and not output.requires_grad:
                # The graph starts here. An output that already depends on an earlier leaf
                # stays in the graph, so gradients w.r.t. shallower layers flow through it.
                output = output.detach().requires_grad_(True)
                torch.set_grad_enabled(True)  # for the rest of the pass; `no_grad` below restores
            activations[name] = output
            return output.clone()

        return hook

    # The prefix runs without a graph either way; inference mode when none is needed at all.
    context = torch.no_grad() if grad else torch.inference_mode()
    recorders = {name: recorder(name) for name in calls}
    with context, hooked(module, recorders), rows_with_grad(module, list(calls)):
        logits = module(batch)
    return LayerPass(logits, activations)


def score_gradients(
    logits: torch.Tensor, targets: torch.Tensor, inputs: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """d(logit of each target)/d(input) for every input tensor; see `gradients_of`.

    Args:
        logits: [B, classes], part of a graph reaching `inputs`.
        targets: int64 [B, T].
    """
    return gradients_of(logits.gather(1, targets), inputs)


def gradients_of(scores: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d(score of each target)/d(input) for every input tensor, one backward pass for all.

    Args:
        scores: [B, T] (a Target's scores), part of a graph reaching `inputs`.
        inputs: tensors of the graph (e.g. hooked activations) [B, ...].

    Returns:
        One tensor [B, T, ...] per input. Images are independent (eval mode), so summing
        scores over the batch gives every image its own gradient. Scores that depend on
        nothing (a box no detection matches scores a constant 0) give zero gradients.

    Raises:
        InvalidInput: an input the scores do not depend on.
    """
    count = scores.shape[1]
    if not scores.requires_grad:
        return [torch.zeros_like(x)[:, None].expand(-1, count, *x.shape[1:]) for x in inputs]
    grads: Sequence[torch.Tensor | None]
    if count == 1:
        grads = torch.autograd.grad(scores.sum(), list(inputs), allow_unused=True)
        grads = [g[:, None] if g is not None else None for g in grads]
    else:
        # One batched backward pass (vmap over the one-hot grad_outputs) for all targets.
        eye = torch.eye(count, dtype=scores.dtype, device=scores.device)
        grad_outputs = eye[:, None, :].expand(count, *scores.shape)
        try:
            grads = torch.autograd.grad(
                scores,
                list(inputs),
                grad_outputs=grad_outputs,
                is_grads_batched=True,
                retain_graph=True,  # kept for the fallback below
                allow_unused=True,
            )
        except (RuntimeError, NotImplementedError):  # no batching rule: one pass per target
            per_target = [
                torch.autograd.grad(
                    scores[:, t].sum(), list(inputs), retain_graph=True, allow_unused=True
                )
                for t in range(count)
            ]
            grads = [
                None if per_target[0][i] is None else torch.stack([g[i] for g in per_target])
                for i in range(len(inputs))
            ]
        grads = [g.transpose(0, 1) if g is not None else None for g in grads]
    present = [g for g in grads if g is not None]
    if len(present) != len(grads):
        raise InvalidInput("layer: the model's output does not depend on this layer", field="layer")
    return present
