"""What a comparison showed, and the tallies drawn from it: accuracy, agreement, per-class
accuracy and the pictures whose prediction flipped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model_registry.datasets import normalise
from model_registry.registry import LoadedModel


@dataclass(frozen=True)
class Side:
    """One model's predictions over the compared pictures.

    Attributes:
        predicted: the predicted name per picture: a dataset class when the model's labels
            match the dataset's classes (the argmax over those classes, as the dataset
            analysis predicts), else the model's own label; None when the output is no
            classifier's.
        probability: float [N], the softmax probability of `predicted`.
        class_index: int [N], the predicted dataset class, or None when labels do not match.
        class_probability: float [N, classes], the probability of each dataset class, or None.
    """

    predicted: tuple[str, ...] | None
    probability: np.ndarray | None
    class_index: np.ndarray | None
    class_probability: np.ndarray | None

    @staticmethod
    def of(
        model: LoadedModel,
        classes: Sequence[str],
        which: np.ndarray | None,
        probability: np.ndarray | None,
        chances: np.ndarray | None,
    ) -> Side:
        """The side from `predictions` of every picture joined (`which` None: the model
        gave no probabilities for some)."""
        if which is None or probability is None:
            return Side(None, None, None, None)
        if chances is None:
            names = tuple(model.label(int(i)) for i in which)
            return Side(names, probability, None, None)
        names = tuple(classes[int(i)] for i in which)
        return Side(names, probability, which.astype(np.int64), chances)


def predictions(
    rows: np.ndarray, class_map: tuple[int, ...] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per picture, from softmax rows [n, outputs]: the predicted index (a dataset class
    when `class_map` matches the model's labels to the dataset's classes, the argmax over
    those classes as the dataset analysis predicts; else the model's own output), its
    probability, and each dataset class's probability [n, classes] (None without a map)."""
    if class_map is None:
        return rows.argmax(axis=1).astype(np.int64), rows.max(axis=1), None
    chances = rows[:, list(class_map)]
    return chances.argmax(axis=1).astype(np.int64), chances.max(axis=1), chances


@dataclass(frozen=True)
class Flip:
    index: int
    label: str
    predicted_a: str
    probability_a: float
    predicted_b: str
    probability_b: float
    change: float


@dataclass(frozen=True)
class ClassAccuracy:
    name: str
    accuracy_a: float | None
    accuracy_b: float | None
    count: int


@dataclass(frozen=True)
class Comparison:
    """Attributes:
    classes: the dataset's classes.
    indices: int64 [N], the dataset index of each compared picture (unreadable ones left out).
    labels: int64 [N], each picture's dataset class.
    cka: float64 [layers_a, layers_b].
    a, b: each model's predictions.
    drift: per shared layer, the mean over pictures of ||a - b|| / ||a||.
    """

    classes: tuple[str, ...]
    indices: np.ndarray
    labels: np.ndarray
    cka: np.ndarray
    a: Side
    b: Side
    drift: dict[str, float]

    def accuracy(self, side: Side) -> float | None:
        if side.class_index is None:
            return None
        return float((side.class_index == self.labels).mean())

    def agreement(self) -> float | None:
        """The share of pictures where both predict the same name (compared as labels are
        matched: ignoring case, spaces, '-' and '_')."""
        if self.a.predicted is None or self.b.predicted is None:
            return None
        same = [
            normalise(x) == normalise(y)
            for x, y in zip(self.a.predicted, self.b.predicted, strict=True)
        ]
        return float(np.mean(same))

    def per_class(self) -> list[ClassAccuracy]:
        rows = []
        for number, name in enumerate(self.classes):
            mask = self.labels == number
            count = int(mask.sum())
            if count == 0:
                continue
            accuracies = [
                None
                if side.class_index is None
                else float((side.class_index[mask] == number).mean())
                for side in (self.a, self.b)
            ]
            rows.append(ClassAccuracy(name, accuracies[0], accuracies[1], count))
        return rows

    def flips(self) -> list[Flip]:
        """Pictures predicted differently, largest change first: the change of the true
        class's probability when both models' labels match the dataset, else the larger of
        the two models' confidences."""
        a, b = self.a, self.b
        if a.predicted is None or b.predicted is None:
            return []
        if a.probability is None or b.probability is None:
            return []
        rows = np.arange(len(self.labels))
        if a.class_probability is not None and b.class_probability is not None:
            change = np.abs(
                a.class_probability[rows, self.labels] - b.class_probability[rows, self.labels]
            )
        else:
            change = np.maximum(a.probability, b.probability)
        differ = [i for i in rows if normalise(a.predicted[i]) != normalise(b.predicted[i])]
        differ.sort(key=lambda i: -float(change[i]))
        return [
            Flip(
                index=int(self.indices[i]),
                label=self.classes[int(self.labels[i])],
                predicted_a=a.predicted[i],
                probability_a=float(a.probability[i]),
                predicted_b=b.predicted[i],
                probability_b=float(b.probability[i]),
                change=float(change[i]),
            )
            for i in differ
        ]
