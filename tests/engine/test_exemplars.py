"""Dataset exemplars against a brute-force top-k over every hooked activation of the set (on
digits and on a folder written by the test), their boxes, progress, and the montage."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from model_registry.datasets import DigitsDataset, FolderDataset, scan_folder
from model_registry.layout import to_maps
from model_registry.registry import LoadedModel
from service.engine.capture import hooked
from service.engine.exemplars.montage import (
    BACKGROUND,
    BOX_COLOUR,
    GAP,
    montage,
    montage_size,
    scaled_box,
    tile_size,
)
from service.engine.exemplars.plan import ExemplarPlan, plan_exemplars
from service.engine.exemplars.receptive_field import receptive_field
from service.engine.exemplars.run import Exemplars, exemplars
from service.engine.exemplars.topk import RunningTopK, merge
from service.engine.images import decode_image, preprocess
from tests.helpers import png
from tests.tiny_models import loaded, seeded

MAX_PIXELS = 1 << 24


def brute_force(model: LoadedModel, dataset, plan: ExemplarPlan) -> dict[str, np.ndarray]:
    """Every activation of the layer over the whole set kept (same batches as the plan), then
    ranked by numpy: score descending, index ascending."""
    info = model.catalog.get(plan.layer)
    kept: list[np.ndarray] = []

    def hook(_module, _inputs, output) -> None:
        kept.append(to_maps(output, info.map_layout).float().clone().numpy())

    for start in range(0, len(plan.indices), plan.batch_size):
        chunk = plan.indices[start : start + plan.batch_size]
        images = [decode_image(dataset.read(i), max_pixels=MAX_PIXELS) for i in chunk]
        with torch.inference_mode(), hooked(model.module, {plan.layer: hook}):
            model.module(preprocess(images, model.spec, model.device))
    maps = np.concatenate(kept)[:, list(plan.channels)]  # [N, C, H, W]
    flat = maps.reshape(*maps.shape[:2], -1)
    scores = flat.max(axis=2) if plan.score == "max" else flat.mean(axis=2)
    order = np.stack(
        [
            np.lexsort((np.asarray(plan.indices), -scores[:, c]))[: plan.k]
            for c in range(maps.shape[1])
        ]
    )  # [C, k] rows of the set
    where = flat.argmax(axis=2)  # first maximum, row by row
    channel = np.arange(maps.shape[1])[:, None]
    return {
        "indices": np.asarray(plan.indices)[order],
        "values": scores[order, channel],
        "positions": where[order, channel],
    }


def check(result: Exemplars, expected: dict[str, np.ndarray], width: int) -> None:
    np.testing.assert_array_equal(result.indices, expected["indices"])
    np.testing.assert_allclose(result.values, expected["values"], rtol=0, atol=1e-5)
    flat = result.positions[..., 0] * width + result.positions[..., 1]
    np.testing.assert_array_equal(flat, expected["positions"])
    assert (np.diff(result.values, axis=1) <= 0).all()


@pytest.mark.parametrize("score", ["max", "mean"])
def test_digits_relu3_equals_brute_force(digits: LoadedModel, score: str) -> None:
    dataset = DigitsDataset()
    plan = plan_exemplars(
        digits, dataset, layer="relu3", channels="0-15,127", k=9, score=score, limit=300, seed=1
    )
    plan = dataclasses.replace(plan, batch_size=64)  # five batches merged
    done: list[tuple[int, int]] = []
    result = exemplars(
        digits, dataset, plan, max_pixels=MAX_PIXELS, progress=lambda d, t: done.append((d, t))
    )
    check(result, brute_force(digits, dataset, plan), 8)
    assert done[-1] == (300, 300) and len(done) == 5
    assert result.images == 300 and result.channels.tolist() == [*range(16), 127]
    labels = [[dataset.label(int(i)) for i in row] for row in result.indices]
    np.testing.assert_array_equal(result.labels, labels)
    field = receptive_field(digits, "relu3")
    y, x = result.positions[3, 0]
    assert tuple(result.boxes[3, 0]) == field.box(int(y), int(x))
    assert not any(m._forward_hooks for m in digits.module.modules())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> FolderDataset:
    root: Path = tmp_path_factory.mktemp("units")
    rng = np.random.default_rng(5)
    for name in ("a", "b"):
        (root / name).mkdir()
        for i in range(7):
            side = int(rng.integers(20, 48))  # other sizes than the model's: resized
            picture = rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8)
            (root / name / f"{i}.png").write_bytes(png(picture))
    (root / "a" / "broken.png").write_bytes(b"no picture")
    return scan_folder("units", root)


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
    return loaded("units-cnn", module, (24, 24), 2)


@pytest.mark.parametrize(("layer", "score", "width"), [("3", "max", 12), ("2", "mean", 12)])
def test_a_folder_equals_brute_force(
    small_cnn: LoadedModel, folder: FolderDataset, layer: str, score: str, width: int
) -> None:
    plan = plan_exemplars(
        small_cnn, folder, layer=layer, channels="all", k=5, score=score, limit=None, seed=0
    )
    plan = dataclasses.replace(plan, batch_size=4)
    broken = folder.files.index("a/broken.png")  # not a picture: skipped
    readable = dataclasses.replace(plan, indices=tuple(i for i in plan.indices if i != broken))
    result = exemplars(small_cnn, folder, plan, max_pixels=MAX_PIXELS)
    assert result.images == len(folder) - 1
    expected = brute_force(small_cnn, folder, dataclasses.replace(readable, batch_size=100))
    np.testing.assert_array_equal(result.indices, expected["indices"])
    np.testing.assert_allclose(result.values, expected["values"], rtol=0, atol=1e-5)


def test_a_vector_layer_has_one_position(small_cnn: LoadedModel, folder: FolderDataset) -> None:
    """fc outputs [2]: one position, the whole input as its box."""
    plan = plan_exemplars(
        small_cnn, folder, layer="6", channels="all", k=3, score="max", limit=None, seed=0
    )
    result = exemplars(small_cnn, folder, plan, max_pixels=MAX_PIXELS)
    assert (result.positions == 0).all() and (result.boxes == [0, 0, 24, 24]).all()


def test_the_montage_draws_each_box_and_crop(digits: LoadedModel) -> None:
    dataset = DigitsDataset()
    plan = plan_exemplars(
        digits, dataset, layer="relu2", channels="5", k=4, score="max", limit=120, seed=0
    )
    result = exemplars(digits, dataset, plan, max_pixels=MAX_PIXELS)
    boxes = [tuple(int(v) for v in b) for b in result.boxes[0]]
    picture = montage(
        dataset, digits.spec, result.indices[0].tolist(), boxes, max_pixels=MAX_PIXELS
    )
    tile = tile_size(digits.spec)
    assert tile == (96, 96)
    assert picture.shape == (*montage_size(digits.spec, 4), 3) == (2 * 96 + 12, 4 * 96 + 20, 3)
    assert Image.open(io.BytesIO(png(picture))).size == (404, 204)
    for column, box in enumerate(boxes):
        left = GAP + column * (tile[1] + GAP)
        x0, y0, x1, y1 = scaled_box(box, digits.spec, tile)
        shown = picture[GAP : GAP + tile[0], left : left + tile[1]]
        for y, x in ((y0, x0), (y0, x1 - 1), (y1 - 1, x0), (y1 - 1, x1 - 1)):
            assert tuple(shown[y, x]) == BOX_COLOUR
        crop = picture[2 * GAP + tile[0] : 2 * GAP + 2 * tile[0], left : left + tile[1]]
        assert not (crop == BOX_COLOUR).all(axis=2).any()
        # The crop fills the tile along its longer side; grey bands pad the other one.
        height, width = box[3] - box[1], box[2] - box[0]
        filled = (crop != BACKGROUND).any(axis=2)
        rows, cols = np.flatnonzero(filled.any(axis=1)), np.flatnonzero(filled.any(axis=0))
        if width > height:
            assert rows[-1] - rows[0] + 1 <= round(96 * height / width) + 1
        elif height > width:
            assert cols[-1] - cols[0] + 1 <= round(96 * width / height) + 1


def test_vit_tokens_read_as_maps_equal_brute_force(
    tiny_vit: LoadedModel, folder: FolderDataset
) -> None:
    """A ViT block's patch tokens ranked as a 4 x 4 map; each box is its token's patch."""
    plan = plan_exemplars(
        tiny_vit,
        folder,
        layer="encoder.layers.encoder_layer_1",
        channels="0-5",
        k=4,
        score="max",
        limit=None,
        seed=0,
    )
    broken = folder.files.index("a/broken.png")
    result = exemplars(tiny_vit, folder, plan, max_pixels=MAX_PIXELS)
    readable = tuple(i for i in plan.indices if i != broken)
    expected = brute_force(tiny_vit, folder, dataclasses.replace(plan, indices=readable))
    check(result, expected, 4)
    y, x = result.positions[..., 0], result.positions[..., 1]
    np.testing.assert_array_equal(result.boxes, np.stack([8 * x, 8 * y, 8 * x + 8, 8 * y + 8], -1))


def test_merged_slices_keep_what_one_pass_keeps_ties_included() -> None:
    """Scores drawn from five values (ties everywhere): slices' top-k lists merged equal one
    running top-k over every picture, ties by lower index, values and positions alike."""
    rng = np.random.default_rng(7)
    scores = torch.tensor(rng.integers(0, 5, (100, 6)), dtype=torch.float32)
    scores[:, 5] = 1.0  # one channel where every picture ties
    positions = torch.tensor(rng.integers(0, 64, (100, 6)))
    indices = torch.arange(100) * 3 + 2  # ascending dataset indices, not 0..99

    def running(rows: range, batch: int) -> RunningTopK:
        top = RunningTopK(6, 8, torch.device("cpu"))
        for start in range(rows.start, rows.stop, batch):
            part = slice(start, min(start + batch, rows.stop))
            top.add(scores[part], positions[part], indices[part])
        return top

    one = running(range(100), 16).partial()
    parts = [running(range(s, min(s + 23, 100)), 5).partial() for s in range(0, 100, 23)]
    merged = merge(parts, 8)
    for name in ("values", "indices", "positions"):
        np.testing.assert_array_equal(merged[name], one[name])
    np.testing.assert_array_equal(one["indices"][5], indices[:8].numpy())
