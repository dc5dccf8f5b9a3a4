"""What a vision transformer itself says about its token sequence: prefix tokens and grid.

`layout.map_layout` guesses the number of class/register tokens from the sequence length
alone; a small ViT with registers can fool it (21 tokens at 32 x 32 read as 1 + 4 x 5
instead of 5 + 4 x 4). timm and Hugging Face models say it exactly, and that is used first.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class TokenGrid:
    """Sequences of `prefix + height * width` tokens are `prefix` extra tokens, then patches."""

    prefix: int
    height: int
    width: int


def _pair(value: object) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def token_grid(module: nn.Module) -> TokenGrid | None:
    """The grid of a timm ViT/DeiT or a Hugging Face ViT-like model; None for anything else."""
    prefix = getattr(module, "num_prefix_tokens", None)  # timm
    grid = _pair(getattr(getattr(module, "patch_embed", None), "grid_size", None))
    if isinstance(prefix, int) and grid is not None:
        return TokenGrid(prefix, *grid)
    for sub in module.modules():  # transformers: the embeddings hold the extra tokens
        patches = getattr(sub, "patch_embeddings", None)
        image, patch = (_pair(getattr(patches, n, None)) for n in ("image_size", "patch_size"))
        if image is None or patch is None:
            continue
        registers = getattr(sub, "register_tokens", None)
        extra = sum(getattr(sub, n, None) is not None for n in ("cls_token", "distillation_token"))
        extra += int(registers.shape[1]) if registers is not None else 0
        return TokenGrid(extra, image[0] // patch[0], image[1] // patch[1])
    return None
