"""Deep Feature Factorization against pytorch-grad-cam's `DeepFeatureFactorization` with the
same NMF settings: concept-class scores and heatmaps r >= 0.99, on a seeded small CNN, the
digits model and the token layer of a tiny timm ViT (read as maps)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import DeepFeatureFactorization
from torch import nn

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.concepts.factorize import compute_concepts, plan_concepts, top_classes
from tests.source_models import TINY_VIT
from tests.tiny_models import loaded, model_batch, pearson, seeded

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


class SmallCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@pytest.fixture(scope="module")
def small_cnn() -> LoadedModel:
    return loaded("small-cnn", seeded(SmallCnn, seed=5), (32, 32), 6)


@pytest.fixture(scope="module")
def timm_vit() -> LoadedModel:
    module = seeded(lambda: timm.create_model("vit_tiny_patch16_224", num_classes=5, **TINY_VIT))
    return loaded("timm-vit", module, (32, 32), 5)


class Case(NamedTuple):
    model: str
    layer: str
    k: int


CASES = [
    Case("small_cnn", "features.4", 4),
    Case("digits", "relu3", 5),
    Case("timm_vit", "blocks.1", 3),
]


def _tokens_as_maps(prefix: int, side: int):
    def reshape(tensor: torch.Tensor) -> torch.Tensor:
        grid = tensor[:, prefix:, :].reshape(tensor.shape[0], side, side, tensor.shape[2])
        return grid.permute(0, 3, 1, 2)

    return reshape


@pytest.mark.parametrize("case", CASES, ids=[c.model for c in CASES])
def test_concepts_equal_pytorch_grad_cam(case: Case, request, photo_images) -> None:
    model: LoadedModel = request.getfixturevalue(case.model)
    pictures = list(photo_images.values())
    batch = model_batch(model, pictures)
    plan = plan_concepts(model, layer=case.layer, k=case.k, top=3)
    ours = compute_concepts(model, batch, plan)

    modules = dict(model.module.named_modules())
    reshape = _tokens_as_maps(1, 4) if case.model == "timm_vit" else None
    head = modules["head" if case.model == "timm_vit" else "fc"]
    reference = DeepFeatureFactorization(
        model.module, modules[case.layer], reshape_transform=reshape, computation_on_concepts=head
    )
    try:
        concepts, explanations, outputs = reference(batch.clone(), case.k)
    finally:
        reference.activations_and_grads.release()
    expected = torch.softmax(torch.from_numpy(outputs), dim=-1).numpy()

    assert ours.heatmaps.shape == (len(pictures), case.k, *model.spec.input_size)
    assert ours.scores is not None
    assert ours.scores.probabilities.shape == expected.shape
    assert pearson(ours.factorization.concepts, concepts) >= 0.99
    assert pearson(ours.scores.probabilities, expected) >= 0.99
    assert pearson(ours.heatmaps, np.stack(explanations)) >= 0.99
    assert ours.heatmaps.min() >= 0.0 and ours.heatmaps.max() <= 1.0
    tops = top_classes(ours.scores, 3)
    assert [c for c, _ in tops[0]] == list(np.argsort(-expected[0], kind="stable")[:3])


def test_an_inner_layer_has_no_classes_and_says_why(digits: LoadedModel, photo_images) -> None:
    batch = model_batch(digits, list(photo_images.values())[:1])
    result = compute_concepts(digits, batch, plan_concepts(digits, layer="relu2", k=3, top=3))
    assert result.scores is None
    assert result.why is not None and "128 features" in result.why and "64 channels" in result.why
    assert result.heatmaps.shape == (1, 3, 32, 32)


@pytest.mark.parametrize(
    ("layer", "k", "field"), [("fc", 2, "layer"), ("relu3", 0, "k"), ("conv1", 33, "k")]
)
def test_bad_plans_name_the_field(digits: LoadedModel, layer: str, k: int, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_concepts(digits, layer=layer, k=k, top=3)
    assert caught.value.field == field


def test_k_above_the_channels_names_the_range(small_cnn: LoadedModel) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_concepts(small_cnn, layer="features.0", k=9, top=3)
    assert caught.value.extra["valid_range"] == [1, 8]
