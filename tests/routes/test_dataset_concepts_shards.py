"""DFF over a dataset as shards (issue 31): run in slices that do not divide the pictures,
each partial packed and unpacked as between replicas, the merge factorizes the joined maps
once, so it answers what the whole run answers: the same pictures and exemplars exactly,
strengths and class scores to float32 rounding; an unreadable picture is a slice's skipped
count, never its failure."""

from __future__ import annotations

import json

import pytest

from model_registry.config import load_config, load_datasets
from model_registry.datasets import DigitsDataset, FolderDataset
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel, load_model
from service.engine.concepts.dataset import sample_indices
from service.engine.concepts.factorize import plan_concepts
from service.engine.progress import no_progress
from service.jobs.shards import ShardedWork
from service.routes.concepts import concepts_work
from tests.dataset_support import PER_CLASS, write_models
from tests.helpers import whole_and_sliced
from tests.numerics import assert_float32_close
from tests.tiny_models import CPU

MAX_PIXELS = 1 << 24


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, FolderDataset]:
    """The python CNN (labels matched to the folders) and 'pets', one file of it broken."""
    config = write_models(tmp_path_factory.mktemp("concept-shards"))
    spec = next(s for s in load_config(config) if s.name == "deadnet")
    return load_model(spec, CPU), load_datasets(config)[0]


def assert_same(work: ShardedWork, size: int) -> dict:
    """Whole and in slices of `size`: pictures, exemplars and classes exactly, strengths and
    scores to float32 rounding. The whole answer."""
    whole_answer, sliced_answer = whole_and_sliced(work, size)
    whole, sliced = json.loads(whole_answer.body), json.loads(sliced_answer.body)
    for key in ("model", "dataset", "layer", "k", "images", "indices", "classifier"):
        assert sliced[key] == whole[key], key
    assert sliced["classes_note"] == whole["classes_note"]
    for mine, theirs in zip(sliced["concepts"], whole["concepts"], strict=True):
        assert [(e["index"], e["label"]) for e in mine["exemplars"]] == [
            (e["index"], e["label"]) for e in theirs["exemplars"]
        ]
        assert_float32_close(
            [e["strength"] for e in mine["exemplars"]], [e["strength"] for e in theirs["exemplars"]]
        )
        if theirs["classes"] is None:
            assert mine["classes"] is None
            continue
        assert [c["class_index"] for c in mine["classes"]] == [
            c["class_index"] for c in theirs["classes"]
        ]
        assert_float32_close(
            [c["score"] for c in mine["classes"]], [c["score"] for c in theirs["classes"]]
        )
    return whole


def test_slices_of_seven_give_the_concepts_of_the_whole_run(digits: LoadedModel) -> None:
    dataset = DigitsDataset()
    plan = plan_concepts(digits, layer="relu3", k=3, top=3)
    indices = sample_indices(dataset, 40, 2)
    work = concepts_work(digits, dataset, plan, indices, exemplars=4, max_pixels=MAX_PIXELS)
    assert work.indices == tuple(indices.tolist())
    assert [len(s) for s in work.slices(7)] == [7, 7, 7, 7, 7, 5]
    whole = assert_same(work, 7)
    assert whole["images"] == 40 and whole["classifier"] == "fc"
    assert all(len(c["exemplars"]) == 4 and len(c["classes"]) == 3 for c in whole["concepts"])


def test_an_unreadable_picture_is_skipped_by_its_slice(
    pets: tuple[LoadedModel, FolderDataset],
) -> None:
    model, dataset = pets
    plan = plan_concepts(model, layer="0", k=2, top=2)
    indices = sample_indices(dataset, None, 0)
    work = concepts_work(model, dataset, plan, indices, exemplars=3, max_pixels=MAX_PIXELS)
    assert len(work.indices) == 3 * PER_CLASS + 1
    whole = assert_same(work, 5)
    assert PER_CLASS not in whole["indices"] and whole["images"] == 3 * PER_CLASS
    partials = [work.run(part, {}, no_progress) for part in work.slices(5)]
    assert [int(p["skipped"]) for p in partials] == [1, 0, 0]
    assert [len(p["maps"]) for p in partials] == [4, 5, 3]


def test_too_few_readable_pictures_fail_the_merge_not_a_slice(
    pets: tuple[LoadedModel, FolderDataset],
) -> None:
    model, dataset = pets
    plan = plan_concepts(model, layer="0", k=2, top=2)
    indices = sample_indices(dataset, None, 0)
    work = concepts_work(model, dataset, plan, indices, exemplars=3, max_pixels=MAX_PIXELS)
    broken = work.run((PER_CLASS,), {}, no_progress)
    assert int(broken["skipped"]) == 1 and broken["maps"].shape == (0, 4, 32, 32)
    with pytest.raises(InvalidInput) as few:
        work.merge([broken, work.run((0,), {}, no_progress)], {})
    assert few.value.field == "dataset"
    assert few.value.detail == f"dataset: only 1 of {3 * PER_CLASS + 1} pictures could be read"
