"""The activation cache keeps a request's own arrays, read-only, and never a whole batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from model_registry.registry import LoadedModel
from service.workers.activation_cache import ActivationCache
from service.workers.tasks import _split
from tests.tiny_models import loaded


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return loaded("tiny", nn.Sequential(nn.Conv2d(3, 4, 3)), (8, 8), 4)


def arrays(batch: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(batch)
    pixels = rng.integers(0, 256, (batch, 8, 8, 3), dtype=np.uint8)
    return pixels, {"0": rng.random((batch, 4, 6, 6), dtype=np.float32)}


def test_one_image_is_kept_as_it_is_and_read_only(model: LoadedModel) -> None:
    cache = ActivationCache(max_bytes=1 << 20)
    pixels, outputs = arrays(1)
    cache.store(model, ["a"], pixels, outputs, tenant="t")
    hit_pixels, hit_outputs = cache.lookup(model, ["a"], ["0"], tenant="t")
    assert hit_pixels is pixels and hit_outputs["0"] is outputs["0"]  # no copy either way
    with pytest.raises(ValueError, match="read-only"):
        hit_outputs["0"][0, 0, 0, 0] = 1.0  # a later view cannot change what others read


def test_images_of_a_batch_are_copied_out_of_it(model: LoadedModel) -> None:
    cache = ActivationCache(max_bytes=1 << 20)
    pixels, outputs = arrays(3)
    cache.store(model, ["a", "b", "c"], pixels, outputs, tenant="t")
    one_pixels, one = cache.lookup(model, ["b"], ["0"], tenant="t")
    assert one["0"].shape == (1, 4, 6, 6) and not np.shares_memory(one["0"], outputs["0"])
    assert not np.shares_memory(one_pixels, pixels)
    np.testing.assert_array_equal(one["0"], outputs["0"][1:2])
    both_pixels, both = cache.lookup(model, ["c", "a"], ["0"], tenant="t")
    np.testing.assert_array_equal(both["0"], outputs["0"][[2, 0]])
    np.testing.assert_array_equal(both_pixels, pixels[[2, 0]])


def test_one_tenants_cached_layers_are_not_anothers(model: LoadedModel) -> None:
    cache = ActivationCache(max_bytes=1 << 20)
    pixels, outputs = arrays(1)
    cache.store(model, ["a"], pixels, outputs, tenant="alice")
    assert cache.lookup(model, ["a"], ["0"], tenant="bob") is None  # a miss: bob computes
    assert cache.lookup(model, ["a"], ["0"], tenant="alice")[0] is pixels
    assert (cache.hits, cache.misses) == (1, 1)


def test_requests_batched_together_get_parts_of_their_own() -> None:
    batch = torch.arange(5 * 2.0).reshape(5, 2)
    alone = _split(batch, [5])
    assert alone[0] is batch  # one request: the batch is its own
    parts = _split(batch, [2, 3])
    assert [p.shape[0] for p in parts] == [2, 3]
    assert all(p.untyped_storage().data_ptr() != batch.untyped_storage().data_ptr() for p in parts)
    assert torch.equal(torch.cat(parts), batch)
