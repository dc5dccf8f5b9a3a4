"""The dataset evaluation job run whole and in slices (each partial packed and unpacked as
between replicas) gives the same answer: with the same batches exactly, with other batches
the same indices, counts, best and worst pictures, and values to float rounding. A
picture's random draws (sensitivity noise, correlation subsets, ROAD's imputer noise) are
seeded by its dataset index, so they do not depend on the slice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from model_registry.datasets import DigitsDataset, scan_folder
from model_registry.registry import LoadedModel
from service.engine.evaluation import dataset_run
from service.engine.evaluation.dataset_run import pick_indices
from service.engine.evaluation.plan import plan_evaluation
from service.engine.progress import no_progress
from service.routes.evaluate import evaluation_work
from tests.dataset_support import write_folder
from tests.helpers import whole_and_sliced
from tests.tiny_models import loaded, seeded

PIXELS = 1 << 24
METRICS = [
    "max-sensitivity",
    "faithfulness-correlation",
    "road-combined",
    "pointing-game",
    "randomization",
]
OPTIONS = {
    "max-sensitivity": {"samples": "3"},
    "faithfulness-correlation": {"correlation_runs": "8", "correlation_subset": "64"},
    "road-combined": {"road_percentiles": "30,70"},
}


def digits_work(model: LoadedModel, limit: int):
    plan = plan_evaluation(
        model, methods=["gradcam"], metrics=METRICS, options=OPTIONS, seed=5, masks=True
    )
    dataset = DigitsDataset()
    indices = pick_indices(dataset, limit, plan.seed)
    return evaluation_work(
        model, dataset, plan, indices, classes=None, target="predicted", max_pixels=PIXELS
    )


def test_slices_of_the_batch_size_answer_exactly_as_whole(digits: LoadedModel, monkeypatch):
    monkeypatch.setattr(dataset_run, "BATCH", 3)  # the whole run's batches are the slices
    work = digits_work(digits, 10)
    assert len(work.slices(3)) == 4  # 3 does not divide 10: a short last slice
    whole, sliced = whole_and_sliced(work, 3)
    assert whole.body == sliced.body
    answer = json.loads(whole.body)
    assert answer["images"] == 10 and answer["indices"] == sorted(answer["indices"])
    cascade = answer["methods"][0]["randomization"]
    assert len(cascade["similarity"]) == 10 and len(cascade["decorrelated_at"]) == 10
    assert len(cascade["mean_similarity"]) == len(cascade["layers"]) == 7  # conv, bn and fc


def test_other_batches_answer_the_same_up_to_float_rounding(digits: LoadedModel) -> None:
    work = digits_work(digits, 10)
    whole, sliced = (json.loads(e.body) for e in whole_and_sliced(work, 3))
    numbers = ("mean", "std", "ci95")
    for ours, theirs in zip(whole["methods"], sliced["methods"], strict=True):
        for metric in METRICS:
            mine, other = ours["metrics"][metric], theirs["metrics"][metric]
            for key in numbers:
                np.testing.assert_allclose(
                    np.asarray(other[key], float),
                    np.asarray(mine[key], float),
                    rtol=1e-4,
                    atol=1e-5,
                )
            assert (mine["n"], mine["best"], mine["worst"]) == (
                other["n"],
                other["best"],
                other["worst"],
            )
        np.testing.assert_allclose(
            np.asarray(theirs["randomization"]["similarity"], float),
            np.asarray(ours["randomization"]["similarity"], float),
            rtol=1e-4,
            atol=1e-5,
        )
        for side in (ours, theirs):
            side.pop("metrics"), side.pop("randomization")
    assert whole == sliced  # indices, counts, rankings, parameters


def test_the_per_picture_values_do_not_depend_on_the_slice(digits: LoadedModel) -> None:
    work = digits_work(digits, 10)
    whole = work.run(work.indices, {}, no_progress)
    parts = [work.run(part, {}, no_progress) for part in work.slices(4)]
    for name in ("indices", "skipped"):
        assert np.array_equal(np.concatenate([p[name] for p in parts]), whole[name])
    joined = np.concatenate([p["values"] for p in parts])
    np.testing.assert_allclose(joined, whole["values"], rtol=1e-4, atol=1e-5)
    assert np.isfinite(whole["values"]).all()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory):
    root: Path = tmp_path_factory.mktemp("evaluate-shards")
    return scan_folder("shards", write_folder(root, ("0", "1"), broken=True))


def test_a_slice_of_unreadable_pictures_counts_them_as_skipped(folder) -> None:
    module = seeded(
        lambda: nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, 2),
        ),
        seed=4,
    )
    model = loaded("shards-cnn", module, (24, 24), 2)
    plan = plan_evaluation(
        model,
        methods=["gradcam"],
        metrics=["sparseness", "max-sensitivity"],
        options={"max-sensitivity": {"samples": "2"}},
        seed=1,
    )
    indices = pick_indices(folder, None, plan.seed)
    broken = next(i for i in indices if "broken" in folder.describe(i))
    work = evaluation_work(
        model, folder, plan, indices, classes=None, target="predicted", max_pixels=PIXELS
    )
    alone = work.run((broken,), {}, no_progress)  # a slice that reads nothing
    assert alone["indices"].size == 0 and alone["skipped"].tolist() == [broken]
    whole, sliced = (json.loads(e.body) for e in whole_and_sliced(work, 2))
    assert whole["skipped"] == sliced["skipped"] == [broken]
    assert whole["images"] == sliced["images"] == len(indices) - 1
    assert whole["indices"] == sliced["indices"]
