"""What a served model is: a frozen description, independent of how it is loaded."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """One model entry.

    Attributes:
        name: registry key used in URLs.
        architecture: `torchvision:<builder>` or `builtin:<name>`.
        weights: a `.safetensors`/`.pt`/`.pth` path, `torchvision:<WEIGHTS>` or None (random).
        input_size: (height, width) the model is fed at.
        mean, std: per-channel normalization; their length is the number of input channels.
        num_classes: width of the classifier output.
        labels: one label per class, or None (labels are then the class indices).
        weights_required: when False, weights that cannot be found locally are replaced by
            random initialisation instead of failing start-up (the built-in defaults only).
    """

    name: str
    architecture: str
    weights: str | None
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    labels: tuple[str, ...] | None = None
    weights_required: bool = True

    @property
    def in_channels(self) -> int:
        return len(self.mean)

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels is not None else str(index)
