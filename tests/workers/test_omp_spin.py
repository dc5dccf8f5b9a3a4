"""`layerscope serve` sets libgomp's spin count before torch (and with it libgomp) loads.

libgomp reads `GOMP_SPINCOUNT` once, when it is loaded. Each check runs in a fresh process and
records the variable at the moment `torch` is first imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMPORT_CLI_AND_REPORT = """
import importlib.abc, json, os, sys

seen = {}

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" and "torch" not in seen:
            seen["torch"] = os.environ.get("GOMP_SPINCOUNT")
        return None

sys.meta_path.insert(0, Watch())
import service.cli  # noqa: E402
import torch  # noqa: E402,F401
print(json.dumps(seen))
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "30000"), ("5000", "5000")])
def test_serve_sets_the_spin_count_before_torch_loads(given: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if given is not None:
        env["GOMP_SPINCOUNT"] = given
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_CLI_AND_REPORT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"torch": expected}
