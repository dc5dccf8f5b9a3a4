"""CKA's invariances through the API: a python-source model that rotates relu3's channels
by an orthogonal matrix and scales them by 3 compares as 1 with the digits model's relu3,
and swapping the models transposes the matrix."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.helpers import digits_entry, run_job, toml_table

FACTORY = '''
import torch
from safetensors.torch import load_file
from torch import nn

from model_registry.builtin.digits import WEIGHTS_PATH, DigitsNet


class Rotated(nn.Module):
    """The digits net; `rotated` is relu3's features times 3 Q (Q orthogonal), a branch
    the prediction does not use."""

    def __init__(self) -> None:
        super().__init__()
        self.net = DigitsNet()
        self.net.load_state_dict(load_file(str(WEIGHTS_PATH)))
        generator = torch.Generator().manual_seed(5)
        q, _ = torch.linalg.qr(torch.randn(128, 128, generator=generator, dtype=torch.float64))
        self.rotated = nn.Conv2d(128, 128, 1, bias=False)
        with torch.no_grad():
            self.rotated.weight.copy_((3.0 * q).float()[:, :, None, None])

    def forward(self, x):
        n = self.net
        x = n.pool1(n.relu1(n.bn1(n.conv1(x))))
        x = n.pool2(n.relu2(n.bn2(n.conv2(x))))
        x = n.relu3(n.bn3(n.conv3(x)))
        self.rotated(x)
        return n.fc(torch.flatten(n.avgpool(x), 1))


def make():
    return Rotated().eval()
'''


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("compare-properties")
    (folder / "factory.py").write_text(FACTORY)
    config = folder / "models.toml"
    config.write_text(
        digits_entry()
        + toml_table(
            "models",
            name="rotated",
            architecture="python:factory.py:make",
            input_size=[32, 32],
            mean=[0.5],
            std=[0.5],
            num_classes=10,
        )
    )
    with TestClient(create_app(Settings(models=config, device="cpu", torch_threads=2))) as client:
        yield client


URL = "/v1/compare/datasets/digits?limit=40&seed=2"
A, B = "relu2,relu3", "net.relu2,net.relu3,rotated"


@pytest.mark.parametrize("debiased", [False, True])
def test_rotation_and_scaling_leave_cka_unchanged_and_swapping_transposes(
    api: TestClient, debiased: bool
) -> None:
    flag = str(debiased).lower()
    _, forward = run_job(
        api, f"{URL}&models=digits,rotated&layers_a={A}&layers_b={B}&debiased={flag}"
    )
    matrix = np.array(forward["cka"]["matrix"], dtype=float)
    assert matrix.shape == (2, 3)
    np.testing.assert_allclose([matrix[0, 0], matrix[1, 1], matrix[1, 2]], 1.0, atol=1e-6)
    np.testing.assert_allclose(matrix[:, 2], matrix[:, 1], atol=1e-6)
    assert matrix[0, 1] < 0.999  # relu2 against relu3: the matrix tells layers apart
    assert forward["agreement"] == 1.0 and forward["flips"] == []
    accuracy = [a["accuracy"] for a in forward["accuracy"]]
    assert accuracy[0] == accuracy[1] is not None
    _, backward = run_job(
        api, f"{URL}&models=rotated,digits&layers_a={B}&layers_b={A}&debiased={flag}"
    )
    np.testing.assert_allclose(np.array(backward["cka"]["matrix"]), matrix.T, atol=1e-9)
    assert backward["indices"] == forward["indices"]
