"""Captured activations kept per (tenant, model, preprocessing, image, layer), bounded in bytes.

A second view of the same image and layer (another channel selection, reduction or
colormap) then skips decoding and the forward pass. Entries are keyed by tenant, so one
tenant never reads (or times) another's: the same picture sent by two tenants is computed
once for each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_registry.registry import LoadedModel
from service.workers.lru import BoundedLRU

_INPUT = "\x00input"  # the model's uint8 pixels, next to its layers


class ActivationCache:
    def __init__(self, *, max_bytes: int) -> None:
        self._entries: BoundedLRU[np.ndarray] = BoundedLRU(max_items=1_000_000, max_bytes=max_bytes)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _prefix(model: LoadedModel, tenant: str) -> tuple:
        spec = model.spec
        return (tenant, spec.name, spec.input_size, spec.mean, spec.std, spec.in_channels)

    def lookup(
        self,
        model: LoadedModel,
        image_ids: Sequence[str],
        layers: Sequence[str],
        *,
        tenant: str,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """The pixels and every layer's outputs, or None unless all are cached.

        Arrays are numpy (no torch here): this runs on the event loop, and only the device
        thread calls torch's parallel kernels.
        """
        prefix = self._prefix(model, tenant)
        inputs: list[np.ndarray] = []
        outputs: dict[str, list[np.ndarray]] = {name: [] for name in layers}
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
        if len(image_ids) == 1:  # the cached arrays themselves: read-only, so never copied
            return inputs[0], {name: parts[0] for name, parts in outputs.items()}
        return np.concatenate(inputs), {
            name: np.concatenate(parts) for name, parts in outputs.items()
        }

    def store(
        self,
        model: LoadedModel,
        image_ids: Sequence[str],
        pixels: np.ndarray,
        outputs: dict[str, np.ndarray],
        *,
        tenant: str,
    ) -> None:
        """Keeps one image's arrays as they are (they are the request's own) and copies each
        image's part of a batch, since a slice would keep the whole batch alive. Stored arrays
        are read-only: every later view of the image reads these very arrays."""
        prefix = self._prefix(model, tenant)
        for index, image_id in enumerate(image_ids):
            for name, array in ((_INPUT, pixels), *outputs.items()):
                part = array if len(image_ids) == 1 else array[index : index + 1].copy()
                part.flags.writeable = False
                self._entries.put((*prefix, image_id, name), part, part.nbytes)
