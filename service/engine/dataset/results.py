"""What a dataset analysis found: the answer `analysis` computes and `merge` assembles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.dataset.tally import LayerSummary


@dataclass(frozen=True)
class Skipped:
    index: int
    reason: str


@dataclass(frozen=True)
class DatasetAnalysis:
    """What the set showed.

    Attributes:
        indices: int64 [N], the dataset index of each analysed picture (skipped ones left out).
        labels: int64 [N], the true class (index into `classes`).
        predicted: int64 [N], the predicted class among `classes`, or None when the class
            names do not map to the model's labels.
        probability: float32 [N], the model's softmax probability of `predicted`.
        skipped: pictures that could not be read or decoded.
        layers: one summary per requested layer.
        points: float32 [N, 2], the projection of the pooled features.
        feature_dim: length of the pooled feature vector.
    """

    classes: tuple[str, ...]
    indices: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray | None
    probability: np.ndarray | None
    skipped: tuple[Skipped, ...]
    layers: tuple[LayerSummary, ...]
    points: np.ndarray
    feature_dim: int

    def confusion(self) -> np.ndarray | None:
        """int64 [C, C]: rows the true class, columns the predicted one."""
        if self.predicted is None:
            return None
        size = len(self.classes)
        flat = np.bincount(self.labels * size + self.predicted, minlength=size * size)
        return flat.reshape(size, size).astype(np.int64)

    def accuracy(self) -> float | None:
        if self.predicted is None:
            return None
        return float((self.labels == self.predicted).mean())

    def mistakes(self) -> list[tuple[int, int, int, float]]:
        """(dataset index, label, predicted, probability), most confident first."""
        if self.predicted is None or self.probability is None:
            return []
        wrong = np.flatnonzero(self.labels != self.predicted)
        order = wrong[np.argsort(-self.probability[wrong], kind="stable")]
        return [
            (
                int(self.indices[i]),
                int(self.labels[i]),
                int(self.predicted[i]),
                float(self.probability[i]),
            )
            for i in order
        ]
