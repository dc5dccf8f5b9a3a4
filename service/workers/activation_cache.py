"""Captured activations kept per (model, preprocessing, image, layer), bounded in bytes.

A second view of the same image and layer (another channel selection, reduction or
colormap) then skips decoding and the forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model_registry.registry import LoadedModel
from service.workers.lru import BoundedLRU

_INPUT = "\x00input"  # the preprocessed picture itself, next to its layers


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.element_size() * tensor.nelement()


class ActivationCache:
    def __init__(self, *, max_bytes: int) -> None:
        self._entries: BoundedLRU[torch.Tensor] = BoundedLRU(
            max_items=1_000_000, max_bytes=max_bytes
        )
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _prefix(model: LoadedModel) -> tuple:
        spec = model.spec
        return (spec.name, spec.input_size, spec.mean, spec.std, spec.in_channels)

    def lookup(
        self, model: LoadedModel, image_ids: Sequence[str], layers: Sequence[str]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """The batch input and every layer's outputs, or None unless all are cached."""
        prefix = self._prefix(model)
        inputs: list[torch.Tensor] = []
        outputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        for image_id in image_ids:
            cached = self._entries.get((*prefix, image_id, _INPUT))
            if cached is None:
                self.misses += 1
                return None
            inputs.append(cached)
            for name in layers:
                value = self._entries.get((*prefix, image_id, name))
                if value is None:
                    self.misses += 1
                    return None
                outputs[name].append(value)
        self.hits += 1
        return torch.cat(inputs), {name: torch.cat(parts) for name, parts in outputs.items()}

    def store(
        self,
        model: LoadedModel,
        image_ids: Sequence[str],
        batch: torch.Tensor,
        outputs: dict[str, torch.Tensor],
    ) -> None:
        prefix = self._prefix(model)
        for index, image_id in enumerate(image_ids):
            for name, tensor in ((_INPUT, batch), *outputs.items()):
                # clone: a slice would keep the whole batch's storage alive
                part = tensor[index : index + 1].detach().to("cpu").clone()
                self._entries.put((*prefix, image_id, name), part, _nbytes(part))
