"""The dataset analysis against a direct computation: figures streamed over several batches
equal those of all activations at once, a planted dead channel is found, unreadable files are
skipped, progress counts pictures and a cancel stops it with no hook left behind."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from model_registry.config import load_config, load_datasets
from model_registry.datasets import FolderDataset
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel, load_model
from service.engine.dataset.analysis import DatasetAnalysis, analyse
from service.engine.dataset.plan import MAX_TSNE_POINTS, plan_analysis
from service.engine.images import decode_image, preprocess
from service.engine.progress import Cancelled
from tests.dataset_support import DEAD_CHANNEL, PER_CLASS, WIDTH, write_models
from tests.numerics import assert_float32_close
from tests.tiny_models import CPU

MAX_PIXELS = 1 << 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, FolderDataset]:
    config = write_models(tmp_path_factory.mktemp("analysis"))
    spec = next(s for s in load_config(config) if s.name == "deadnet")
    return load_model(spec, CPU), load_datasets(config)[0]


@pytest.fixture(scope="module")
def streamed(setup: tuple[LoadedModel, FolderDataset]) -> DatasetAnalysis:
    model, pets = setup
    plan = plan_analysis(
        model, pets, layers=["0", "1"], embedding_layer="1", method="pca", limit=None, seed=0
    )
    # Five pictures per batch: three batches, the histogram edges fixed by the first.
    return analyse(model, pets, dataclasses.replace(plan, batch_size=5), max_pixels=MAX_PIXELS)


def _direct(model: LoadedModel, pets: FolderDataset) -> tuple[dict[str, torch.Tensor], list[int]]:
    readable = [i for i in range(len(pets)) if not pets.files[i].endswith("broken.png")]
    images = [decode_image(pets.read(i), max_pixels=MAX_PIXELS) for i in readable]
    batch = preprocess(images, model.spec, CPU)
    with torch.inference_mode():
        conv = model.module[0](batch)
        relu = torch.relu(conv)
        logits = model.module(batch)
    return {"0": conv, "1": relu, "logits": logits}, readable


def test_streamed_figures_equal_the_direct_computation(
    setup: tuple[LoadedModel, FolderDataset], streamed: DatasetAnalysis
) -> None:
    model, pets = setup
    direct, readable = _direct(model, pets)
    assert streamed.indices.tolist() == readable
    assert streamed.labels.tolist() == [pets.label(i) for i in readable]
    for summary in streamed.layers:
        values = direct[summary.name].double()
        assert summary.shape == (WIDTH, 32, 32)
        assert summary.values == values.numel() == WIDTH * 32 * 32 * len(readable)
        assert int(summary.counts.sum()) == summary.values
        assert summary.sparsity == pytest.approx(float((values <= 0).double().mean()), abs=1e-12)
        assert summary.mean == pytest.approx(float(values.mean()), rel=1e-5, abs=1e-7)
        assert summary.std == pytest.approx(float(values.std(unbiased=False)), rel=1e-5)
        assert (summary.min, summary.max) == pytest.approx(
            (float(values.min()), float(values.max()))
        )
        clipped = np.clip(values.numpy().ravel(), summary.edges[0], summary.edges[-1])
        reference, _ = np.histogram(clipped, bins=summary.edges)
        # Bin edges in float32 (torch) and float64 (numpy) may place a boundary value apart.
        assert np.abs(reference - summary.counts).sum() <= summary.values * 1e-4
        below, above = summary.clamped
        assert below == int((values < summary.edges[0]).sum())
        assert above == int((values > summary.edges[-1]).sum())


def test_a_planted_dead_channel_is_reported(streamed: DatasetAnalysis) -> None:
    conv, relu = streamed.layers
    assert relu.dead_channels == (DEAD_CHANNEL,) and relu.dead_fraction == 1 / WIDTH
    assert conv.dead_fraction is None  # a convolution's negative values are not "dead"


def test_predictions_are_the_best_mapped_class(
    setup: tuple[LoadedModel, FolderDataset], streamed: DatasetAnalysis
) -> None:
    model, pets = setup
    direct, _ = _direct(model, pets)
    # Folders cat, dog-breed, fish match labels Cat, dog_breed, fish in that order.
    probabilities = direct["logits"].softmax(dim=1)
    assert streamed.predicted is not None and streamed.probability is not None
    assert streamed.predicted.tolist() == probabilities.argmax(dim=1).tolist()
    # Streamed in other batches than the direct pass: float32 rounding (tests/numerics.py).
    assert_float32_close(streamed.probability, probabilities.max(dim=1).values)
    confusion = streamed.confusion()
    assert confusion is not None and confusion.sum() == len(streamed.labels)
    assert streamed.accuracy() == pytest.approx(np.trace(confusion) / confusion.sum())
    assert streamed.points.shape == (len(streamed.labels), 2)


def test_unreadable_files_are_skipped_and_named(streamed: DatasetAnalysis) -> None:
    assert [s.index for s in streamed.skipped] == [PER_CLASS]
    assert streamed.skipped[0].reason == f"pets[{PER_CLASS}] is not a decodable image"


def test_progress_counts_pictures_and_cancel_leaves_no_hook(
    setup: tuple[LoadedModel, FolderDataset],
) -> None:
    model, pets = setup
    plan = plan_analysis(
        model, pets, layers=[], embedding_layer=None, method="pca", limit=None, seed=0
    )
    plan = dataclasses.replace(plan, batch_size=4)
    seen: list[tuple[int, int]] = []

    def progress(step: int, total: int) -> None:
        seen.append((step, total))
        if len(seen) == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        analyse(model, pets, plan, max_pixels=MAX_PIXELS, progress=progress)
    assert seen == [(4, 13), (8, 13)]
    assert all(not m._forward_hooks for m in model.module.modules())
    done: list[tuple[int, int]] = []
    analyse(model, pets, plan, max_pixels=MAX_PIXELS, progress=lambda s, t: done.append((s, t)))
    assert done == [(4, 13), (8, 13), (12, 13), (13, 13)]


def test_tsne_is_bounded_and_pca_is_not(setup: tuple[LoadedModel, FolderDataset]) -> None:
    model, pets = setup
    files = tuple(f"cat/{i:05d}.png" for i in range(MAX_TSNE_POINTS + 1))
    large = FolderDataset("large", pets.root, ("cat",), files, (0,) * len(files))
    options = {"layers": [], "embedding_layer": None, "seed": 0}
    with pytest.raises(InvalidInput) as caught:
        plan_analysis(model, large, method="tsne", limit=None, **options)
    assert caught.value.field == "limit" and "method=pca" in caught.value.detail
    sampled = plan_analysis(model, large, method="tsne", limit=MAX_TSNE_POINTS, **options)
    assert len(sampled.indices) == MAX_TSNE_POINTS == len(set(sampled.indices))
    assert len(plan_analysis(model, large, method="pca", limit=None, **options).indices) == len(
        files
    )


@pytest.mark.parametrize("size", [5, 4])
def test_slices_merge_to_the_answer_of_one_pass(
    setup: tuple[LoadedModel, FolderDataset], size: int
) -> None:
    """The dataset job as replicas run it: slices (aligned with the batches, or not, one with
    the unreadable file), each partial packed and unpacked, merged."""
    import json

    from service.routes.datasets import analysis_work
    from tests.helpers import whole_and_sliced

    model, pets = setup
    plan = plan_analysis(
        model, pets, layers=["0", "1"], embedding_layer="1", method="pca", limit=None, seed=0
    )
    plan = dataclasses.replace(plan, batch_size=5)
    work = analysis_work(model, pets, plan, max_pixels=MAX_PIXELS)
    whole, sliced = (json.loads(e.body) for e in whole_and_sliced(work, size))
    assert len(work.slices(size)) > 2
    for key in ("images", "indices", "labels", "predicted", "confusion", "accuracy", "skipped"):
        assert sliced[key] == whole[key], key
    assert sliced["misclassified"] is not None
    assert [m["index"] for m in sliced["misclassified"]] == [
        m["index"] for m in whole["misclassified"]
    ]
    assert sliced["skipped"], "the broken file is counted as skipped"
    for mine, one in zip(sliced["layers"], whole["layers"], strict=True):
        assert mine["histogram"] == one["histogram"]  # edges fixed before the slices
        assert mine["dead_channels"] == one["dead_channels"]
        for key in ("mean", "std", "min", "max", "sparsity"):
            assert mine[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
    mine, one = sliced["embedding"], whole["embedding"]
    assert mine["labels"] == one["labels"]
    # Batches of 5 in slices of 4 are other batches: float32 rounding, not other points.
    assert_float32_close(np.asarray(mine["points"]), np.asarray(one["points"]))
