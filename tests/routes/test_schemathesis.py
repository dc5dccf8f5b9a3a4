"""Schemathesis, every check, against a live server run with an API key: the answers match
the document (statuses, media types, bodies, headers, Allow), invalid requests are refused,
valid ones accepted, authentication is enforced, and no request gets a 5xx.

Grammars (channel lists, dataset references) and fixed sets (colormaps) are in the document
as patterns and enums. What depends on the served data is mapped onto it by the hooks
(schemathesis_hooks.py); `positive_data_acceptance` is off only for the operations whose
valid values the addressed model decides (schemathesis.toml says which, and why).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import LiveServer

KEY = "schemathesis-key"
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
CONFIG = Path(__file__).with_name("schemathesis.toml")


ENV_OF = {"LAYERSCOPE_TORCH_THREADS": "1"}
# The operations in two halves, one run each on one server, so that no one test runs the
# whole document: the explanation endpoints, and everything else.
EXPLAINING = "/(cam|gradients|attributions|compare)"
HALVES = {"explaining": "--include-path-regex", "the rest": "--exclude-path-regex"}
LEAST_TESTED = {"explaining": 4, "the rest": 16}  # operations each half must reach


@pytest.fixture(scope="module")
def live(tiny_config: Path) -> Iterator[LiveServer]:
    env = {
        "LAYERSCOPE_MODELS": str(tiny_config),
        "LAYERSCOPE_API_KEYS": f"fuzzer:{KEY}",
        **ENV_OF,
    }
    server = LiveServer(env)
    try:
        server.wait_ready(timeout=300)  # a bound for a loaded machine, not a timing assertion
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("half", list(HALVES))
def test_schemathesis_finds_no_failure(live: LiveServer, tmp_path: Path, half: str) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            # every check; not `--checks all`, which would override the per-operation
            # switches of the file
            "--config-file",
            str(CONFIG),
            "run",
            f"{live.url}/openapi.json",
            "--max-examples",
            "5",
            "--generation-deterministic",  # the same cases on every run, no example database
            "--workers",
            "1",
            "--header",
            f"Authorization: Bearer {KEY}",
            # whole-dataset analyses and comparisons are long jobs; their answers are
            # tested elsewhere
            "--exclude-operation-id",
            "analyse_dataset",
            "--exclude-operation-id",
            "compare_datasets",
            "--exclude-operation-id",
            "dataset_contributions",
            HALVES[half],
            EXPLAINING,
            "--no-color",
        ],
        cwd=tmp_path,
        env={**os.environ, **ENV_OF, "SCHEMATHESIS_HOOKS": str(HOOKS)},
        capture_output=True,
        text=True,
        timeout=500,
    )
    health = live.process.poll()
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert health is None, "the server died under the fuzzer"
    summary = output[output.rindex("API Operations:") :]
    tested = int(summary.split("Tested:")[1].split()[0])
    assert tested >= LEAST_TESTED[half], summary
    assert " passed" in summary and "failed" not in summary.split("Test cases:")[1], summary
