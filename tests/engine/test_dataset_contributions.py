"""The class x channel matrix equals per-picture contributions averaged by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from model_registry.datasets import DigitsDataset
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.contributions import channel_contributions, plan_contributions
from service.engine.attribution.dataset_contributions import (
    dataset_contributions,
    plan_dataset_contributions,
)
from service.engine.attribution.target_objects import ClassTarget
from service.engine.images import decode_image, preprocess
from service.engine.progress import Cancelled
from tests.numerics import assert_float32_close


@pytest.mark.parametrize("method", ["grad-x-act", "conductance"])
def test_matrix_is_the_mean_per_label(digits: LoadedModel, method: str) -> None:
    dataset = DigitsDataset()
    options = {"layer": "relu3", "method": method, "steps": 4, "baseline": "zero", "top": 5}
    plan = plan_dataset_contributions(digits, dataset, limit=24, seed=3, **options)
    plan = type(plan)(**{**vars(plan), "batch_size": 7})  # several batches, a ragged last one
    steps = []
    result = dataset_contributions(
        digits, dataset, plan, max_pixels=10**7, progress=lambda d, t: steps.append((d, t))
    )
    assert steps == sorted(steps) and steps[-1] == (24, 24)
    inside = {0} if method == "conductance" else set()  # conductance's passes report too
    assert {done for done, _ in steps} == inside | {7, 14, 21, 24}
    single = plan_contributions(digits, **options)
    by_class: dict[int, list[np.ndarray]] = {}
    for index in plan.indices:
        picture = decode_image(dataset.read(index), max_pixels=10**7, index=index)
        label = dataset.label(index)
        batch = preprocess([picture], digits.spec, digits.device)
        target = torch.tensor([[label]])
        _, values = channel_contributions(digits, batch, single, fixed_targets=ClassTarget(target))
        by_class.setdefault(label, []).append(values[0, 0].numpy())
    assert result.counts.sum() == 24 and list(result.indices) == list(plan.indices)
    for label in range(10):
        if label in by_class:
            assert result.counts[label] == len(by_class[label])
            assert_float32_close(result.matrix[label], np.mean(by_class[label], axis=0))
        else:
            assert result.counts[label] == 0 and np.isnan(result.matrix[label]).all()


def test_a_model_without_a_classifier_is_refused(digits: LoadedModel) -> None:
    segmenter = replace(digits, spec=replace(digits.spec, task="segmentation"))
    with pytest.raises(InvalidInput) as raised:
        plan_dataset_contributions(
            segmenter,
            DigitsDataset(),
            layer="relu3",
            method="grad-x-act",
            steps=4,
            baseline="zero",
            top=5,
        )
    assert raised.value.field == "model" and "classifier" in raised.value.detail


def test_cancel_stops_between_batches(digits: LoadedModel) -> None:
    options = {"layer": "relu3", "method": "grad-x-act", "steps": 4, "baseline": "zero", "top": 5}
    plan = plan_dataset_contributions(digits, DigitsDataset(), limit=30, **options)
    plan = replace(plan, batch_size=5)
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done >= 10:
            raise Cancelled

    with pytest.raises(Cancelled):
        dataset_contributions(digits, DigitsDataset(), plan, max_pixels=10**7, progress=progress)
    assert seen == [5, 10]


def test_conductance_can_be_cancelled_inside_a_batch(digits: LoadedModel) -> None:
    options = {"layer": "relu3", "method": "conductance", "steps": 4, "baseline": "zero", "top": 5}
    plan = plan_dataset_contributions(digits, DigitsDataset(), limit=6, **options)
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        raise Cancelled

    with pytest.raises(Cancelled):
        dataset_contributions(digits, DigitsDataset(), plan, max_pixels=10**7, progress=progress)
    assert seen == [0]  # during the first batch's path, before any picture was counted
