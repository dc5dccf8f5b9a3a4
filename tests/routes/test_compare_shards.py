"""The dataset comparison as shards (issue 31): run in slices that do not divide the
pictures, each partial packed and unpacked as between replicas, it answers what the whole
run answers: the same pictures, predictions, flips and counts exactly, CKA and drift to
float32 rounding; an unreadable picture is a slice's skipped count, never its failure."""

from __future__ import annotations

import copy
import json
from typing import NamedTuple

import numpy as np
import pytest
import torch

from model_registry.config import load_config, load_datasets
from model_registry.datasets import DigitsDataset, FolderDataset
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel, load_model
from service.engine.compare.plan import plan_compare
from service.engine.progress import no_progress
from service.jobs.shards import ShardedWork
from service.routes.compare import compare_work
from tests.dataset_support import PER_CLASS, write_models
from tests.helpers import whole_and_sliced
from tests.numerics import assert_float32_close
from tests.tiny_models import CPU, loaded

MAX_PIXELS = 1 << 24
LAYERS = ["relu1", "relu2", "relu3"]


class Variant(NamedTuple):
    pool: str
    debiased: bool


@pytest.fixture(scope="module")
def digits_b(digits: LoadedModel) -> LoadedModel:
    """A second digits checkpoint: the shipped weights with seeded noise on every parameter."""
    module = copy.deepcopy(digits.module)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.3 * param.std() * torch.randn(param.shape, generator=generator))
    return loaded("digits-b", module, (32, 32), 10, gray=True)


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, FolderDataset]:
    """The python CNN (labels matched to the folders) and 'pets', one file of it broken."""
    config = write_models(tmp_path_factory.mktemp("compare-shards"))
    spec = next(s for s in load_config(config) if s.name == "deadnet")
    return load_model(spec, CPU), load_datasets(config)[0]


def answers(work: ShardedWork, size: int) -> tuple[dict, dict]:
    whole, sliced = whole_and_sliced(work, size)
    assert whole.media_type == sliced.media_type == "application/json"
    return json.loads(whole.body), json.loads(sliced.body)


def assert_same(whole: dict, sliced: dict) -> None:
    """Pictures, predictions and counts exactly; CKA, drift and probabilities to float32."""
    for key in ("models", "dataset", "pool", "debiased", "images", "indices", "accuracy"):
        assert sliced[key] == whole[key], key
    assert sliced["agreement"] == whole["agreement"]
    assert sliced["per_class"] == whole["per_class"]
    exact = ("index", "label", "predicted_a", "predicted_b")
    assert [[f[k] for k in exact] for f in sliced["flips"]] == [
        [f[k] for k in exact] for f in whole["flips"]
    ]
    for key in ("probability_a", "probability_b", "change"):
        assert_float32_close([f[key] for f in sliced["flips"]], [f[key] for f in whole["flips"]])
    assert sliced["cka"]["layers_a"] == whole["cka"]["layers_a"]
    assert sliced["cka"]["layers_b"] == whole["cka"]["layers_b"]
    assert_float32_close(sliced["cka"]["matrix"], whole["cka"]["matrix"])
    assert [d["layer"] for d in sliced["drift"]] == [d["layer"] for d in whole["drift"]]
    assert_float32_close(
        [d["drift"] for d in sliced["drift"]], [d["drift"] for d in whole["drift"]]
    )


@pytest.mark.parametrize(
    "variant",
    [Variant("mean", False), Variant("mean", True), Variant("flatten", False)],
    ids=lambda v: f"{v.pool}{'-debiased' if v.debiased else ''}",
)
def test_slices_of_five_answer_what_the_whole_run_answers(
    digits: LoadedModel, digits_b: LoadedModel, variant: Variant
) -> None:
    dataset = DigitsDataset()
    plan = plan_compare(
        digits,
        digits_b,
        dataset,
        layers_a=LAYERS,
        layers_b=LAYERS,
        pool=variant.pool,
        debiased=variant.debiased,
        limit=23,
        seed=3,
    )
    work = compare_work(digits, digits_b, dataset, plan, max_pixels=MAX_PIXELS)
    assert work.indices == plan.indices and [len(s) for s in work.slices(5)] == [5, 5, 5, 5, 3]
    whole, sliced = answers(work, 5)
    assert_same(whole, sliced)
    assert whole["images"] == 23 and whole["indices"] == list(plan.indices)
    assert whole["flips"] and [d["layer"] for d in whole["drift"]] == LAYERS
    assert np.isfinite(np.array(whole["cka"]["matrix"], dtype=float)).all()


def test_an_unreadable_picture_is_skipped_by_its_slice(
    pets: tuple[LoadedModel, FolderDataset], digits: LoadedModel
) -> None:
    """deadnet (labels matched) against digits (its own labels): 13 files, one broken."""
    deadnet, dataset = pets
    plan = plan_compare(
        deadnet,
        digits,
        dataset,
        layers_a=["0", "1"],
        layers_b=None,
        pool="mean",
        debiased=False,
        limit=None,
        seed=0,
    )
    work = compare_work(deadnet, digits, dataset, plan, max_pixels=MAX_PIXELS)
    assert len(work.indices) == 3 * PER_CLASS + 1
    whole, sliced = answers(work, 4)
    assert_same(whole, sliced)
    assert PER_CLASS not in whole["indices"] and whole["images"] == 3 * PER_CLASS
    accuracy = {a["model"]: a["accuracy"] for a in whole["accuracy"]}
    assert accuracy["digits"] is None and accuracy["deadnet"] is not None
    skipped = [int(work.run(part, {}, no_progress)["skipped"]) for part in work.slices(4)]
    assert skipped == [0, 1, 0, 0]


def test_too_few_readable_pictures_fail_the_merge_not_a_slice(
    pets: tuple[LoadedModel, FolderDataset],
) -> None:
    deadnet, dataset = pets
    plan = plan_compare(
        deadnet,
        deadnet,
        dataset,
        layers_a=["0"],
        layers_b=["0"],
        pool="mean",
        debiased=False,
        limit=None,
        seed=0,
    )
    work = compare_work(deadnet, deadnet, dataset, plan, max_pixels=MAX_PIXELS)
    broken = work.run((PER_CLASS,), {}, no_progress)  # the broken file alone: no failure
    assert int(broken["skipped"]) == 1 and broken["indices"].tolist() == []
    one = work.run((0,), {}, no_progress)
    with pytest.raises(InvalidInput) as few:
        work.merge([broken, one], {})
    assert few.value.field == "dataset"
    assert few.value.detail == f"dataset: only 1 of {3 * PER_CLASS + 1} pictures could be read"


def test_progress_counts_the_slices_pictures(digits: LoadedModel) -> None:
    dataset = DigitsDataset()
    plan = plan_compare(
        digits,
        digits,
        dataset,
        layers_a=["relu1"],
        layers_b=["relu1"],
        pool="mean",
        debiased=False,
        limit=11,
        seed=0,
    )
    work = compare_work(digits, digits, dataset, plan, max_pixels=MAX_PIXELS)
    seen: list[tuple[int, int]] = []
    work.in_slices(4)(lambda step, total: seen.append((step, total)))
    assert seen[-1] == (11, 11) and [s for s, _ in seen] == sorted(s for s, _ in seen)
