"""A ViT's attention probabilities and block outputs, recorded during one forward pass.

Fused attention kernels never materialize the softmax, so a `TorchFunctionMode` replaces
`scaled_dot_product_attention` (timm, Hugging Face) and `multi_head_attention_forward`
(torchvision's `nn.MultiheadAttention`) by their explicit form for the duration of the pass
and records the per-head probabilities [B, heads, N, N], which stay in the autograd graph.
No module of the shared model is changed; the block hooks are removed in `finally`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from model_registry.token_grid import token_grid
from service.engine.capture import hooked


@dataclass(frozen=True)
class VitParts:
    """blocks: the transformer blocks in order; project: block tokens [B, N, D] -> logits
    (the model's final norm and head on the mean token, as torchcam's LeGrad); prefix:
    class/register tokens before the patches; grid: the patch grid (height, width)."""

    blocks: list[str]
    project: Callable[[torch.Tensor], torch.Tensor]
    prefix: int
    grid: tuple[int, int]


def vit_parts(module: nn.Module) -> VitParts | None:
    """The parts of a torchvision or timm VisionTransformer; None for any other model."""
    layers = getattr(getattr(module, "encoder", None), "layers", None)
    if isinstance(layers, nn.Sequential) and hasattr(module, "heads"):  # torchvision
        side = cast(int, module.image_size) // cast(int, module.patch_size)
        final = cast(nn.Module, cast(nn.Module, module.encoder).ln)
        heads = cast(nn.Module, module.heads)
        return VitParts(
            [f"encoder.layers.{name}" for name, _ in layers.named_children()],
            lambda tokens: heads(final(tokens.mean(dim=1))),
            1,
            (side, side),
        )
    grid = token_grid(module)
    blocks = getattr(module, "blocks", None)
    if grid is not None and isinstance(blocks, nn.Sequential) and hasattr(module, "head"):
        norm = cast(nn.Module, module.norm)
        fc_norm = cast(nn.Module, getattr(module, "fc_norm", nn.Identity()))
        head = cast(nn.Module, module.head)
        return VitParts(
            [f"blocks.{name}" for name, _ in blocks.named_children()],
            lambda tokens: head(fc_norm(norm(tokens.mean(dim=1)))),
            grid.prefix,
            (grid.height, grid.width),
        )
    return None


def _explicit_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    **_: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + mask) v, and the probabilities (no dropout: eval only)."""
    logits = query @ key.transpose(-2, -1) * (scale or 1 / math.sqrt(query.shape[-1]))
    if is_causal:
        size = logits.shape[-2:]
        keep = torch.ones(size, dtype=torch.bool, device=logits.device).tril()
        logits = logits.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        else:
            logits = logits + attn_mask
    probabilities = logits.softmax(dim=-1)
    return probabilities @ value, probabilities


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.probabilities: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            out, probabilities = _explicit_attention(*args, **kwargs)
            self.probabilities.append(probabilities)
            return out
        if func is F.multi_head_attention_forward:
            wanted = kwargs.get("need_weights", True)
            averaged = kwargs.get("average_attn_weights", True)
            kwargs = {**kwargs, "need_weights": True, "average_attn_weights": False}
            _, probabilities = func(*args, **kwargs)
            self.probabilities.append(probabilities)
            out = _replayed(args, kwargs, probabilities)
            if not wanted:
                return out, None
            return out, probabilities.mean(dim=1) if averaged else probabilities
        return func(*args, **kwargs)


def _replayed(args: tuple, kwargs: dict, probabilities: torch.Tensor) -> torch.Tensor:
    """nn.MultiheadAttention's output recomputed from the probabilities it returned: they are
    a view taken after their use, so gradients w.r.t. them need this use (as torchcam)."""
    _, _, value, embed, heads, in_weight, in_bias = args[:7]
    if args[7] is not None or args[8] is not None or args[9]:
        raise ValueError("attention with added key/value tokens is not supported")
    if kwargs.get("use_separate_proj_weight"):
        raise ValueError("attention with separate q/k/v projections is not supported")
    out_weight, out_bias = args[11], args[12]
    source, batch = value.shape[0], value.shape[1]
    values = F.linear(
        value, in_weight[2 * embed :], None if in_bias is None else in_bias[2 * embed :]
    )
    values = values.reshape(source, batch * heads, embed // heads).transpose(0, 1)
    mixed = probabilities.reshape(batch * heads, -1, source) @ values  # [B*H, L, hd]
    mixed = mixed.transpose(0, 1).reshape(-1, batch, embed)
    return F.linear(mixed, out_weight, out_bias)


@dataclass(frozen=True)
class AttentionPass:
    """logits; probabilities: one [B, heads, N, N] per block; tokens: each block's output."""

    logits: torch.Tensor
    probabilities: list[torch.Tensor]
    tokens: list[torch.Tensor]


def attention_pass(module: nn.Module, parts: VitParts, batch: torch.Tensor) -> AttentionPass:
    """One forward pass recording every block's attention probabilities and output."""
    tokens: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            tokens[name] = output

        return hook

    recorder = _Recorder()
    with hooked(module, {name: keep(name) for name in parts.blocks}), recorder:
        logits = module(batch)
    if len(recorder.probabilities) != len(parts.blocks):
        raise RuntimeError(
            f"{len(recorder.probabilities)} attention calls in {len(parts.blocks)} blocks"
        )
    return AttentionPass(logits, recorder.probabilities, [tokens[n] for n in parts.blocks])
