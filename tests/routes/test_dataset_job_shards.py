"""The units and dataset-contributions jobs run whole and in slices (each partial packed and
unpacked as between replicas) give the same answer: top-k indices, positions, counts and
montages exactly, float values to float32 rounding (batches differ between the two runs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from model_registry.datasets import DigitsDataset, FolderDataset, scan_folder
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.dataset_contributions import plan_dataset_contributions
from service.engine.exemplars.plan import plan_exemplars
from service.engine.progress import no_progress
from service.routes.contributions import contributions_work
from service.routes.exemplars import units_work
from tests.dataset_support import PER_CLASS, write_folder
from tests.helpers import whole_and_sliced
from tests.numerics import assert_float32_close
from tests.tiny_models import loaded, seeded

PIXELS = 1 << 24


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> FolderDataset:
    """Classes '0' and '1' (the labels of a model without names), one file not a picture."""
    root: Path = tmp_path_factory.mktemp("shards")
    return scan_folder("shards", write_folder(root, ("0", "1"), broken=True))


@pytest.fixture(scope="module")
def small_cnn() -> LoadedModel:
    module = seeded(
        lambda: nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 2),
        ),
        seed=4,
    )
    return loaded("shards-cnn", module, (24, 24), 2)


def check_units(whole, sliced) -> dict:
    """The two JSON answers: all but the values exactly equal, the values float32-close."""
    ours, theirs = json.loads(whole.body), json.loads(sliced.body)
    values = [[t.pop("value") for t in unit["top"]] for unit in ours["units"]]
    again = [[t.pop("value") for t in unit["top"]] for unit in theirs["units"]]
    assert ours == theirs
    assert_float32_close(np.asarray(again), np.asarray(values))
    return json.loads(whole.body)


@pytest.mark.parametrize("score", ["max", "mean"])
def test_units_sliced_equal_one_pass(digits: LoadedModel, score: str) -> None:
    dataset = DigitsDataset()
    plan = plan_exemplars(
        digits, dataset, layer="relu3", channels="0-15,127", k=9, score=score, limit=300, seed=1
    )
    plan = dataclasses.replace(plan, batch_size=32)
    work = units_work(digits, dataset, plan, fmt="json", max_pixels=PIXELS)
    assert len(work.slices(70)) == 5  # 70 does not divide 300: a short last slice
    answer = check_units(*whole_and_sliced(work, 70))
    assert answer["images"] == 300 and [u["channel"] for u in answer["units"]] == [
        *range(16),
        127,
    ]
    assert all(len(u["top"]) == 9 for u in answer["units"])
    # the winners come from several slices, so the merge did pick across them
    slices = [set(s) for s in work.slices(70)]
    winners = {t["index"] for u in answer["units"] for t in u["top"]}
    assert sum(1 for s in slices if s & winners) >= 2


def test_units_png_sliced_is_the_same_montage(digits: LoadedModel) -> None:
    dataset = DigitsDataset()
    plan = plan_exemplars(
        digits, dataset, layer="relu2", channels="5", k=4, score="max", limit=120, seed=0
    )
    whole, sliced = whole_and_sliced(
        units_work(digits, dataset, plan, fmt="png", max_pixels=PIXELS), 50
    )
    assert whole.media_type == sliced.media_type == "image/png"
    assert whole.body == sliced.body


def test_units_slice_counts_an_unreadable_picture_as_skipped(
    small_cnn: LoadedModel, folder: FolderDataset
) -> None:
    plan = plan_exemplars(
        small_cnn, folder, layer="3", channels="all", k=3, score="max", limit=None, seed=0
    )
    plan = dataclasses.replace(plan, batch_size=3)
    broken = folder.files.index("0/99-broken.png")
    assert broken == PER_CLASS and len(plan.indices) == 2 * PER_CLASS + 1
    work = units_work(small_cnn, folder, plan, fmt="json", max_pixels=PIXELS)
    part = next(p for p in work.slices(4) if broken in p)
    partial = work.run(part, {}, no_progress)
    assert (int(partial["skipped"]), int(partial["images"])) == (1, len(part) - 1)
    assert broken not in partial["indices"]
    alone = work.run((broken,), {}, no_progress)  # nothing read: a partial, not an error
    assert (int(alone["skipped"]), int(alone["images"])) == (1, 0)
    assert alone["indices"].shape == (8, 0)
    answer = check_units(*whole_and_sliced(work, 4))
    assert answer["images"] == len(folder) - 1
    with pytest.raises(InvalidInput) as raised:  # only the merge knows no slice read any
        work.merge([alone], {})
    assert raised.value.field == "dataset" and f"none of {len(folder)}" in raised.value.detail


def check_matrix(whole, sliced) -> dict:
    """The two JSON answers: counts, labels and top channels exactly equal, the matrix and
    the listed contributions float32-close (a class without pictures: null in both)."""
    ours, theirs = json.loads(whole.body), json.loads(sliced.body)
    mine, other = (np.array(a.pop("matrix"), dtype=np.float64) for a in (ours, theirs))
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(other))
    seen = ~np.isnan(mine).all(axis=1)
    assert_float32_close(other[seen], mine[seen])
    values = [[c.pop("contribution") for c in row["channels"]] for row in ours["classes"]]
    again = [[c.pop("contribution") for c in row["channels"]] for row in theirs["classes"]]
    assert ours == theirs
    for a, b in zip(again, values, strict=True):
        assert_float32_close(a, b)
    return ours


@pytest.mark.parametrize("method", ["grad-x-act", "conductance"])
def test_contributions_sliced_equal_one_pass(digits: LoadedModel, method: str) -> None:
    dataset = DigitsDataset()
    options = {"layer": "relu3", "method": method, "steps": 4, "baseline": "zero", "top": 5}
    plan = plan_dataset_contributions(digits, dataset, limit=40, seed=2, **options)
    plan = dataclasses.replace(plan, batch_size=7)
    work = contributions_work(digits, dataset, plan, max_pixels=PIXELS)
    answer = check_matrix(*whole_and_sliced(work, 15))
    assert answer["images"] == 40 and sum(row["images"] for row in answer["classes"]) == 40


def test_contributions_slice_counts_an_unreadable_picture_as_skipped(
    small_cnn: LoadedModel, folder: FolderDataset
) -> None:
    options = {"layer": "3", "method": "grad-x-act", "steps": 4, "baseline": "zero", "top": 3}
    plan = plan_dataset_contributions(small_cnn, folder, **options)
    plan = dataclasses.replace(plan, batch_size=3)
    broken = folder.files.index("0/99-broken.png")
    work = contributions_work(small_cnn, folder, plan, max_pixels=PIXELS)
    part = next(p for p in work.slices(4) if broken in p)
    partial = work.run(part, {}, no_progress)
    assert int(partial["skipped"]) == 1 and int(partial["counts"].sum()) == len(part) - 1
    assert broken not in partial["kept"].tolist()
    answer = check_matrix(*whole_and_sliced(work, 4))
    assert answer["images"] == len(folder) - 1
    assert [row["images"] for row in answer["classes"]] == [PER_CLASS, PER_CLASS]
