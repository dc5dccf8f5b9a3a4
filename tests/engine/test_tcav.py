"""TCAV: a known answer (a tiny CNN trained here to rely on a red patch finds the patch
concept significant and a random folder not), and Captum's `TCAV` with the same CAVs gives
the same sign-count scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from captum.concept import TCAV, Concept
from captum.concept._utils.classifier import Classifier
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from model_registry.datasets import DatasetCatalog, scan_folder
from model_registry.errors import InvalidInput, NotFound
from model_registry.registry import LoadedModel
from service.engine.concepts.tcav import input_gradients, plan_tcav, run_tcav, sign_score
from tests.helpers import IMAGENET_MEAN, IMAGENET_STD
from tests.tiny_models import loaded, model_batch

SIDE = 16


def _pictures(rng: np.random.Generator, count: int, *, patch: bool) -> list[np.ndarray]:
    """Grey noise; with `patch`, a pure red 5x5 square somewhere."""
    out = []
    for _ in range(count):
        grey = rng.uniform(0.2, 0.8, size=(SIDE, SIDE, 1)) + rng.normal(0, 0.05, (SIDE, SIDE, 3))
        picture = np.clip(grey, 0, 1)
        if patch:
            y, x = rng.integers(0, SIDE - 5, size=2)
            picture[y : y + 5, x : x + 5] = (1.0, 0.0, 0.0)
        out.append(np.round(picture * 255).astype(np.uint8))
    return out


class PatchNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(
            torch.flatten(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))), 1)
        )


def _normalize(pictures: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[
        :, None, None
    ]


@pytest.fixture(scope="module")
def patch_model() -> LoadedModel:
    """Class 1 = a red patch is there; trained in about a second, seeded."""
    rng = np.random.default_rng(0)
    x = _normalize(_pictures(rng, 64, patch=False) + _pictures(rng, 64, patch=True))
    y = torch.tensor([0] * 64 + [1] * 64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = PatchNet()
        optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
        for _ in range(60):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    accuracy = (net(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.95
    return loaded("patch-net", net, (SIDE, SIDE), 2)


@pytest.fixture(scope="module")
def concept_sets(tmp_path_factory: pytest.TempPathFactory) -> DatasetCatalog:
    root = tmp_path_factory.mktemp("tcav") / "sets"
    rng = np.random.default_rng(1)
    for name, count, patch in (("patch", 30, True), ("noise", 60, False), ("other", 30, False)):
        (root / name).mkdir(parents=True)
        for i, picture in enumerate(_pictures(rng, count, patch=patch)):
            Image.fromarray(picture).save(root / name / f"{i}.png")
    return DatasetCatalog([scan_folder("sets", root)])


@pytest.fixture(scope="module")
def inputs() -> list[Image.Image]:
    return [Image.fromarray(p) for p in _pictures(np.random.default_rng(2), 12, patch=True)]


def _plan(model, catalog, **changes):
    options = {
        "layers": ["relu1", "relu2"],
        "concepts": ["sets/patch", "sets/other"],
        "random": "sets/noise",
        "target": 1,
        "runs": 10,
        "samples": 15,
        "seed": 0,
    }
    return plan_tcav(model, catalog, **{**options, **changes})


def test_the_planted_patch_is_significant_and_a_random_folder_is_not(
    patch_model, concept_sets, inputs
) -> None:
    plan = _plan(patch_model, concept_sets)
    result = run_tcav(patch_model, model_batch(patch_model, inputs), plan, max_pixels=10**6)
    found = {(s.layer, s.concept): s for s in result.scores}
    patch = found[("relu2", "sets/patch")]
    other = found[("relu2", "sets/other")]
    assert patch.scores.mean() > 0.9 and patch.significant(plan.alpha), patch
    assert patch.accuracy > 0.7
    assert not other.significant(plan.alpha), other
    assert result.inputs == len(inputs) and len(result.scores) == 4


def test_the_same_request_gives_the_same_scores(patch_model, concept_sets, inputs) -> None:
    plan = _plan(patch_model, concept_sets, runs=3, layers=["relu2"], concepts=["sets/other"])
    batch = model_batch(patch_model, inputs)
    first, second = (run_tcav(patch_model, batch, plan, max_pixels=10**6) for _ in range(2))
    np.testing.assert_array_equal(first.scores[0].scores, second.scores[0].scores)


class _Fixed(Classifier):
    """Captum's classifier interface around a CAV trained elsewhere."""

    def __init__(self, cav: np.ndarray) -> None:
        self.cav = torch.tensor(cav, dtype=torch.float32)

    def train_and_eval(self, dataloader, **kwargs):
        return {"accs": torch.tensor(1.0)}

    def weights(self) -> torch.Tensor:
        return torch.stack([self.cav, -self.cav])  # rows in the order of classes()

    def classes(self) -> list[int]:
        return [0, 1]


def test_sign_counts_equal_captum_with_the_same_cav(patch_model, inputs, tmp_path: Path) -> None:
    plan = plan_tcav(
        patch_model,
        DatasetCatalog(),
        layers=["relu2"],
        concepts=["digits/1"],
        random="digits",
        target=1,
        runs=2,
        samples=4,
        seed=0,
    )
    batch = model_batch(patch_model, inputs)
    gradients = input_gradients(patch_model, batch, plan)["relu2"]
    cav = np.random.default_rng(3).normal(size=gradients.shape[1])
    ours = sign_score(gradients, cav)
    data = DataLoader(list(batch[:4].clone()), batch_size=4)
    concept, random = Concept(0, "c", data), Concept(1, "r", data)
    captum = TCAV(
        patch_model.module, ["relu2"], classifier=_Fixed(cav), save_path=str(tmp_path) + "/"
    )
    scores = captum.interpret(batch.clone(), [[concept, random]], target=1)
    assert 0.0 < ours < 1.0
    assert float(scores["0-1"]["relu2"]["sign_count"][0]) == pytest.approx(ours, abs=1e-6)


def test_bad_requests_name_the_field(patch_model, concept_sets) -> None:
    with pytest.raises(InvalidInput) as caught:
        _plan(patch_model, concept_sets, runs=1)
    assert caught.value.field == "runs"
    with pytest.raises(NotFound) as missing:
        _plan(patch_model, concept_sets, concepts=["stripes"])
    assert missing.value.extra["choices"] == ["digits", "sets"]
    with pytest.raises(NotFound) as no_class:
        _plan(patch_model, concept_sets, concepts=["sets/stripes"])
    assert no_class.value.extra["choices"] == ["noise", "other", "patch"]
