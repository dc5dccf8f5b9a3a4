"""numpy's BLAS runs `BLAS_THREADS` threads (default 1) in a serving process.

OpenBLAS keeps a spinning thread team of its own. With it and torch's OpenMP team on the same
two cores, a PCA view (a numpy covariance and eigh) took 250 ms instead of 8 ms, so the app
sets numpy's BLAS threads on the device thread when it loads its models. threadpoolctl lets
the first thread that sets OpenBLAS's limit keep it while that thread lives, so each check
runs in a fresh process, as a server does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import digits_entry

ROOT = Path(__file__).resolve().parents[2]
SERVE_AND_REPORT = """
import json, sys
from fastapi.testclient import TestClient
from threadpoolctl import threadpool_info
from service.app import create_app
from service.settings import Settings

settings = Settings(models=sys.argv[1], device="cpu", blas_threads=int(sys.argv[2]))
with TestClient(create_app(settings)) as client:
    ready = client.get("/readyz").status_code
    blas = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
print(json.dumps({"ready": ready, "blas": blas}))
"""


@pytest.mark.parametrize("threads", [1, 3])
def test_a_served_app_sets_numpy_blas_threads(tmp_path: Path, threads: int) -> None:
    config = tmp_path / "models.toml"
    config.write_text(digits_entry(), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT, str(config), str(threads)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"ready": 200, "blas": [threads]}
