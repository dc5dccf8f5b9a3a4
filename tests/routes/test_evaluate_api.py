"""Explanations evaluated over HTTP: per picture against /cam's own trust view, over the
digits and over a folder dataset whose masks the test writes, the bootstrap interval, cancel
and the bad inputs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.settings import Settings
from tests.dataset_support import FACTORY, PER_CLASS, PET_CLASSES, write_folder
from tests.helpers import digits_entry, error_body, factory_entry, files, png, run_job, toml_table

DIGITS = "/v1/models/digits/evaluate"
DIGITS_JOB = "/v1/models/digits/datasets/digits/evaluate"
PETS_JOB = "/v1/models/deadnet/datasets/pets/evaluate"


def write_masks(root: Path, pets: Path) -> Path:
    """A mask per picture of the first two classes (the centre square), none for the last
    class, and one of the wrong size: those count as pictures without a mask."""
    masks = root / "pet-masks"
    for name in PET_CLASSES[:2]:
        (masks / name).mkdir(parents=True)
        for picture in sorted((pets / name).glob("*.png")):
            mask = np.zeros((32, 32), dtype=np.uint8)
            mask[8:24, 8:24] = 255
            (masks / name / picture.name).write_bytes(png(Image.fromarray(mask)))
    (masks / PET_CLASSES[0] / "00.png").write_bytes(png(Image.new("L", (5, 5), 255)))
    return masks


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("evaluate")
    (folder / "factory.py").write_text(FACTORY)
    pets = write_folder(folder / "pets", PET_CLASSES, broken=False)
    masks = write_masks(folder, pets)
    config = folder / "models.toml"
    config.write_text(
        digits_entry()
        + factory_entry("deadnet", labels=["cat", "dog-breed", "fish"])
        + toml_table("datasets", name="pets", path="pets", masks=masks)
        + toml_table("datasets", name="plain", path="pets")
    )
    settings = Settings(models=config, device="cpu", torch_threads=2)
    with TestClient(create_app(settings)) as client:
        yield client


def test_deletion_per_picture_equals_the_trust_view_of_cam(api: TestClient) -> None:
    images = "image=dataset:digits/3,dataset:digits/40"
    answer = api.post(
        f"{DIGITS}?{images}&methods=gradcam,vanilla&metrics=deletion,sparseness,pointing-game"
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [m["method"] for m in body["methods"]] == ["gradcam", "vanilla"]
    assert body["metrics"]["deletion"]["higher_is_better"] is False
    for method in body["methods"]:
        for values in method["metrics"].values():
            assert len(values) == 2 and all(v is not None for v in values)
        assert all(0.0 <= v <= 1.0 for v in method["metrics"]["pointing-game"])
    cam = api.post(f"/v1/models/digits/cam?{images}&layer=relu3&metrics=deletion&format=json")
    assert cam.status_code == 200, cam.text
    trusted = [item["deletion"] for item in cam.json()["maps"]]
    assert body["methods"][0]["metrics"]["deletion"] == pytest.approx(trusted, abs=1e-5)


def test_randomization_answers_a_similarity_per_depth_per_picture(api: TestClient) -> None:
    """Grad-CAM decorrelates once the top layers are random; guided backprop does not at
    depth 1 (Adebayo et al. 2018): the per-depth detail and the first decorrelated depth."""
    images = "image=dataset:digits/3,dataset:digits/40"
    answer = api.post(
        f"{DIGITS}?{images}&methods=gradcam,guided-backprop&metrics=randomization"
        "&options.randomization.depths=3"
    )
    assert answer.status_code == 200, answer.text
    gradcam, guided = answer.json()["methods"]
    for method in (gradcam, guided):
        cascade = method["randomization"]
        assert cascade["layers"] == ["fc", "bn3", "conv3"] and cascade["threshold"] == 0.5
        similarity = np.asarray(cascade["similarity"], dtype=float)
        assert similarity.shape == (2, 3)
        means = np.nanmean(similarity, axis=1)
        assert method["metrics"]["randomization"] == pytest.approx(means.tolist(), abs=1e-12)
        first = [next((d + 1 for d, v in enumerate(row) if v < 0.5), None) for row in similarity]
        assert cascade["decorrelated_at"] == first
    assert gradcam["randomization"]["decorrelated_at"] == [1, 1]
    assert all(row[0] > 0.5 for row in guided["randomization"]["similarity"])


def test_digits_job_summarises_with_an_interval_that_narrows(api: TestClient) -> None:
    query = "methods=gradcam,vanilla&metrics=sparseness,pointing-game&seed=5"
    job, small = run_job(api, f"{DIGITS_JOB}?{query}&limit=8")
    assert job["kind"] == "evaluate_dataset" and job["progress"]["total"] == 8
    _, large = run_job(api, f"{DIGITS_JOB}?{query}&limit=96")
    assert large["images"] == 96 and large["without_mask"] == 0 and large["resamples"] == 1000
    for result in (small, large):
        for method in result["methods"]:
            for summary in method["metrics"].values():
                low, high = summary["ci95"]
                assert low <= summary["mean"] <= high
                assert summary["n"] == result["images"]
                assert set(summary["best"]) <= set(result["indices"])
    small_ci, large_ci = (r["methods"][0]["metrics"]["sparseness"]["ci95"] for r in (small, large))
    assert np.diff(large_ci) < np.diff(small_ci)
    ranking = {r["metric"]: r for r in large["rankings"]}
    means = {m["method"]: m["metrics"]["sparseness"]["mean"] for m in large["methods"]}
    assert ranking["sparseness"]["methods"] == sorted(means, key=means.get, reverse=True)
    assert large["overall"][0] in means


def test_folder_masks_that_do_not_match_are_counted(api: TestClient) -> None:
    _, result = run_job(api, f"{PETS_JOB}?methods=gradcam&metrics=relevance-mass,sparseness")
    pictures = PER_CLASS * len(PET_CLASSES)
    assert result["images"] == pictures
    assert result["without_mask"] == PER_CLASS + 1  # the last class, and one 5 x 5 mask
    summary = result["methods"][0]["metrics"]
    assert summary["relevance-mass"]["n"] == pictures - PER_CLASS - 1
    assert summary["sparseness"]["n"] == pictures


def test_a_dataset_evaluation_can_be_cancelled(api: TestClient) -> None:
    accepted = api.post(f"{DIGITS_JOB}?methods=scorecam&metrics=deletion&limit=500")
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    assert api.delete(location).status_code == 200
    end = time.monotonic() + 300  # a bound against hangs, not a timing assertion
    while (body := api.get(location).json())["status"] in ("queued", "running"):
        assert time.monotonic() < end, body
        time.sleep(0.05)
    assert body["status"] == "cancelled", body


@pytest.mark.parametrize(
    ("url", "status", "field", "words"),
    [
        (
            f"{DIGITS}?image=dataset:digits/1&methods=nope&metrics=deletion",
            422,
            "methods",
            "gradcam",
        ),
        (
            f"{DIGITS}?image=dataset:digits/1&methods=gradcam&metrics=nope",
            422,
            "metrics",
            "road-combined",
        ),
        (
            f"{DIGITS}?image=dataset:digits/1&methods=gradcam&metrics=deletion"
            "&options.gradcam.steps=4",
            422,
            "options.gradcam.steps",
            "gradcam",
        ),
        (
            f"{DIGITS}?image=dataset:digits/1&methods=gradcam&metrics=max-sensitivity"
            "&options.max-sensitivity.samples=100000",
            422,
            "options.max-sensitivity.samples",
            "samples",
        ),
        (f"{DIGITS_JOB}?methods=gradcam&metrics=deletion&limit=100000", 422, "limit", None),
        (
            "/v1/models/deadnet/datasets/plain/evaluate?methods=gradcam&metrics=pointing-game",
            422,
            "metrics",
            "masks come from",
        ),
        (
            f"{DIGITS}?image=dataset:digits/1&methods=gradcam&metrics=faithfulness-correlation"
            "&options.faithfulness-correlation.correlation_subset=1025",
            422,
            "options.faithfulness-correlation.correlation_subset",
            "1024 values",
        ),
        (
            f"{DIGITS_JOB}?methods=gradcam&metrics=faithfulness-correlation"
            "&options.faithfulness-correlation.correlation_subset=5000",
            422,
            "options.faithfulness-correlation.correlation_subset",
            "1024 values",
        ),
        (
            f"{DIGITS_JOB}?methods=gradcam&metrics=deletion&options.other.x=1",
            422,
            "options.other",
            "none of the methods",
        ),
    ],
)
def test_bad_inputs_name_the_field(
    api: TestClient, url: str, status: int, field: str, words: str | None
) -> None:
    body = error_body(api.post(url), status, field)
    if words is not None:
        assert words in body["detail"]


def test_an_upload_has_no_mask_for_a_localisation_metric(api: TestClient) -> None:
    picture = png(Image.new("L", (32, 32), 128))
    answer = api.post(f"{DIGITS}?methods=gradcam&metrics=pointing-game", files=files(picture))
    body = error_body(answer, 422, "metrics")
    assert "masks come from" in body["detail"]
