"""The README as a new user reads it: a real server, every curl line run as written."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import serving

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def curl_lines() -> list[str]:
    return [
        line.strip()
        for block in _bash_blocks()
        for line in block.splitlines()
        if line.strip().startswith("curl ")
    ]


RESULT_WAIT_S = 600  # a loaded 2-core machine ran a README job for minutes, not seconds


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`layerscope serve` in a subprocess, as `make serve` runs it."""
    with serving() as live:
        yield live.url


def test_readme_has_the_two_commands() -> None:
    first = _bash_blocks()[0]
    assert "make serve" in first and "make test" in first
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _curl_blocks() -> list[list[str]]:
    """The curl lines of each bash block, in README order (later lines read files that
    earlier ones wrote, such as upload.json and job.txt, in one working folder)."""
    blocks = [
        [line.strip() for line in block.splitlines() if line.strip().startswith("curl ")]
        for block in _bash_blocks()
    ]
    return [block for block in blocks if block]


CURL_BLOCKS = _curl_blocks()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder a reader works in, with the samples the tour writes."""
    folder = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    samples = next(
        line
        for block in _bash_blocks()
        for line in block.splitlines()
        if "layerscope samples" in line
    )
    command = samples.replace(
        ".venv/bin/layerscope", f"{shlex.quote(sys.executable)} -m service.cli"
    )
    subprocess.run(command, shell=True, cwd=folder, env=env, check=True, capture_output=True)
    return folder


def test_the_readme_has_curl_lines_for_a_reader() -> None:
    assert sum(len(block) for block in CURL_BLOCKS) >= 12


CURL_LINES = [line for block in CURL_BLOCKS for line in block]


@pytest.mark.parametrize("number", range(len(CURL_LINES)), ids=lambda i: f"line{i}")
def test_every_curl_line_works_against_a_live_server(
    server: str, workdir: Path, number: int
) -> None:
    """One test per line, in README order (pytest keeps it), in one working folder."""
    _check_curl_line(CURL_LINES[number], server, workdir)


def _check_curl_line(line: str, server: str, tmp_path: Path) -> None:
    command = line.replace("http://127.0.0.1:8000", server).replace(
        "curl ", "curl --fail-with-body ", 1
    )
    # A job's result is there once the job has run: retry as a user would, until the job
    # is done (bounded by a cap far above any README job, not by a guess of its length).
    deadline = time.monotonic() + RESULT_WAIT_S
    while True:
        result = subprocess.run(
            command, shell=True, cwd=tmp_path, capture_output=True, timeout=RESULT_WAIT_S
        )
        if result.returncode == 0 or "/result" not in line or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, f"{line}\n{result.stdout[:500]!r}\n{result.stderr[:500]!r}"
    output = re.search(r"-o (\S+)", line)
    if output is None:
        if "/metrics" in line:
            assert b"layerscope_request_duration_seconds" in result.stdout
        else:
            json.loads(result.stdout)
        return
    data = (tmp_path / output.group(1)).read_bytes()
    if output.group(1) == "/dev/null":
        return
    if output.group(1).endswith(".png"):
        assert Image.open(io.BytesIO(data)).format == "PNG"
    elif output.group(1).endswith(".npz"):
        assert zipfile.is_zipfile(io.BytesIO(data)) and len(np.load(io.BytesIO(data)).files) >= 2
    else:
        assert np.load(io.BytesIO(data)).dtype == np.float32


def test_every_route_has_a_curl_line() -> None:
    from service.app import create_app

    documented = re.sub(
        r"\$\([^)]*\)", "ID", " ".join(curl_lines())
    )  # shell substitutions give ids
    paths = list(create_app().openapi()["paths"])
    assert "/v1/models/{model}/feature-maps" in paths and len(paths) >= 8
    for path in paths:
        pattern = re.sub(r"\\\{[^}]+\\\}", r"[^/?\" ]+", re.escape(path)) + r"(?:[?\" ]|$)"
        assert re.search(pattern, documented), f"README has no curl line for {path}"
