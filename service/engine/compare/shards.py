"""A comparison in slices of its pictures: what one slice hands on (a `Partial`), and the
merge of every slice's, in slice order, into the `Comparison` one pass gives (issue 31).

A slice's partial holds, for the pictures it could read: their indices and labels, each
model's predictions (`predictions`), each shared layer's drift per picture, and for CKA
either `StreamingCka`'s sums (pool=mean, linear CKA: the merge adds them) or every
picture's pooled features (pool=flatten or debiased: the merge joins them and builds the
Gram matrices once). Per-picture arrays join in slice order, so indices, predictions,
accuracy, agreement, flips and drift are one pass's; the CKA sums are added in another
order, equal up to float rounding. Layers are named by position in the plan's lists, so a
layer name never has to be a valid array name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.compare.cka import StreamingCka, gram, gram_cka
from service.engine.compare.outcome import Comparison, Side, predictions
from service.engine.compare.plan import ComparePlan
from service.engine.partials import Partial, concat

SIDES = ("a", "b")


class Tally:
    """What one slice's batches leave, gathered into its partial."""

    def __init__(self, plan: ComparePlan) -> None:
        self.plan = plan
        widths = (plan.widths_a, plan.widths_b)
        self.streaming = (
            StreamingCka(list(plan.widths_a), list(plan.widths_b)) if plan.streaming else None
        )
        self.features: list[list[list[np.ndarray]]] = [[[] for _ in w] for w in widths]
        self.drift: list[list[np.ndarray]] = [[] for _ in plan.drift]
        self.predicted: list[list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = [[], []]
        self.missing = [False, False]  # a batch without probabilities (not logits)
        self.indices: list[int] = []
        self.labels: list[int] = []
        self.skipped = 0

    def add(
        self,
        indices: Sequence[int],
        labels: Sequence[int],
        features: tuple[list[np.ndarray], list[np.ndarray]],
        drift: list[np.ndarray],
        probabilities: tuple[np.ndarray | None, np.ndarray | None],
    ) -> None:
        """One batch of read pictures: per model its layers' pooled features and its
        softmax rows (None when its output is no classifier's), per shared layer the drift."""
        self.indices.extend(indices)
        self.labels.extend(labels)
        if self.streaming is not None:
            self.streaming.add(features[0], features[1])
        else:
            for store, values in zip(self.features, features, strict=True):
                for bucket, layer in zip(store, values, strict=True):
                    bucket.append(layer)
        for changes, change in zip(self.drift, drift, strict=True):
            changes.append(change)
        maps = (self.plan.class_map_a, self.plan.class_map_b)
        for side, (rows, class_map) in enumerate(zip(probabilities, maps, strict=True)):
            if rows is None:
                self.missing[side] = True
            else:
                self.predicted[side].append(predictions(rows, class_map))

    def partial(self) -> Partial:
        plan = self.plan
        out: Partial = {
            "indices": np.asarray(self.indices, dtype=np.int64),
            "labels": np.asarray(self.labels, dtype=np.int64),
            "skipped": np.asarray(self.skipped, dtype=np.int64),
        }
        if self.streaming is not None:
            out.update(self.streaming.state())
        else:
            for key, store, widths in zip(
                SIDES, self.features, (plan.widths_a, plan.widths_b), strict=True
            ):
                for i, (parts, width) in enumerate(zip(store, widths, strict=True)):
                    out[f"features_{key}.{i}"] = _joined(parts, (0, width), np.float32)
        for i, parts in enumerate(self.drift):
            out[f"drift.{i}"] = _joined(parts, (0,), np.float64)
        maps = (plan.class_map_a, plan.class_map_b)
        for key, rows, missing, class_map in zip(
            SIDES, self.predicted, self.missing, maps, strict=True
        ):
            if missing:
                continue
            out[f"{key}.which"] = _joined([r[0] for r in rows], (0,), np.int64)
            out[f"{key}.probability"] = _joined([r[1] for r in rows], (0,), np.float32)
            if class_map is not None:
                chances = [r[2] for r in rows if r[2] is not None]
                out[f"{key}.chances"] = _joined(chances, (0, len(class_map)), np.float32)
        return out


def _joined(parts: list[np.ndarray], empty: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(empty, dtype=dtype)


def merge(
    partials: Sequence[Partial],
    plan: ComparePlan,
    models: tuple[LoadedModel, LoadedModel],
    classes: tuple[str, ...],
) -> Comparison:
    """Every slice's partial, in slice order, as one comparison.

    Raises:
        InvalidInput: fewer readable pictures than CKA needs (2, or 4 with `debiased`).
    """
    indices = concat(partials, "indices", empty=np.zeros(0, dtype=np.int64))
    total = len(plan.indices)
    if len(indices) < (4 if plan.debiased else 2):
        raise InvalidInput(
            f"dataset: only {len(indices)} of {total} pictures could be read", field="dataset"
        )
    if plan.streaming:
        streaming = StreamingCka(list(plan.widths_a), list(plan.widths_b))
        for part in partials:
            streaming.add_state(part)
        matrix = streaming.matrix()
    else:
        grams = [
            [
                gram(concat(partials, f"features_{key}.{i}", empty=np.zeros((0, w), np.float32)))
                for i, w in enumerate(widths)
            ]
            for key, widths in zip(SIDES, (plan.widths_a, plan.widths_b), strict=True)
        ]
        matrix = gram_cka(grams[0], grams[1], debiased=plan.debiased)
    drift = {
        name: float(np.nanmean(concat(partials, f"drift.{i}", empty=np.zeros(0))))
        for i, name in enumerate(plan.drift)
    }
    return Comparison(
        classes=classes,
        indices=indices,
        labels=concat(partials, "labels", empty=np.zeros(0, dtype=np.int64)),
        cka=matrix,
        a=_side(partials, "a", models[0], classes, plan.class_map_a),
        b=_side(partials, "b", models[1], classes, plan.class_map_b),
        drift=drift,
    )


def _side(
    partials: Sequence[Partial],
    key: str,
    model: LoadedModel,
    classes: tuple[str, ...],
    class_map: tuple[int, ...] | None,
) -> Side:
    """One model's predictions, or none when a slice had a batch without probabilities."""
    if not all(f"{key}.which" in part for part in partials):
        return Side.of(model, classes, None, None, None)
    which = concat(partials, f"{key}.which", empty=np.zeros(0, dtype=np.int64))
    probability = concat(partials, f"{key}.probability", empty=np.zeros(0, dtype=np.float32))
    chances = None
    if class_map is not None:
        empty = np.zeros((0, len(class_map)), dtype=np.float32)
        chances = concat(partials, f"{key}.chances", empty=empty)
    return Side.of(model, classes, which, probability, chances)
