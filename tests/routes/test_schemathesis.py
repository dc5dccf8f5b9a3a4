"""Schemathesis, every check but one, against a live server run with an API key: the answers
match the document (statuses, media types, bodies, headers, Allow), invalid requests are
refused, authentication is enforced, and no request gets a 5xx.

`positive_data_acceptance` is left out: some parameters have a grammar or a dependency
JSON Schema cannot state (channel lists like `first:8`, `dataset:NAME/INDEX` references,
parameters only some methods take, the filters of a layer that has none), so a request
valid by the document alone can still earn a documented 422.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import LiveServer

KEY = "schemathesis-key"
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


def test_schemathesis_finds_no_failure(tiny_config: Path, tmp_path: Path) -> None:
    env = {
        "LAYERSCOPE_MODELS": str(tiny_config),
        "LAYERSCOPE_API_KEYS": f"fuzzer:{KEY}",
        "LAYERSCOPE_TORCH_THREADS": "1",
    }
    live = LiveServer(env)
    try:
        live.wait_ready(timeout=300)  # a bound for a loaded machine, not a timing assertion
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{live.url}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "5",
                "--generation-deterministic",  # the same cases on every run, no example database
                "--workers",
                "1",
                "--header",
                f"Authorization: Bearer {KEY}",
                # a whole-dataset analysis is a long job; its answers are tested elsewhere
                "--exclude-operation-id",
                "analyse_dataset",
                "--no-color",
            ],
            cwd=tmp_path,
            env={**os.environ, **env, "SCHEMATHESIS_HOOKS": str(HOOKS)},
            capture_output=True,
            text=True,
            timeout=500,
        )
        health = live.process.poll()
    finally:
        live.stop()
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert health is None, "the server died under the fuzzer"
    summary = output[output.rindex("API Operations:") :]
    tested = int(summary.split("Tested:")[1].split()[0])
    assert tested >= 20, summary
    assert " passed" in summary and "failed" not in summary.split("Test cases:")[1], summary
