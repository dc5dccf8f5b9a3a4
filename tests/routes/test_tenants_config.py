"""Key settings: every mistake stops `layerscope serve` with one line and exit code 2 (never
a server without auth, never the key in the message); keys compare in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from model_registry.errors import ConfigError
from service.middleware import tenants
from service.middleware.tenants import KeyRing, load_keys
from service.settings import Settings
from service.workers.tenancy import Tenant

ROOT = Path(__file__).resolve().parents[2]


def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LAYERSCOPE_")}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", "1"],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


class Bad(NamedTuple):
    name: str
    env: dict[str, str]
    expected: str  # the start of the line after "layerscope: "


def bad_cases(folder: Path) -> list[Bad]:
    empty, comments = folder / "empty.keys", folder / "comments.keys"
    empty.write_text("")
    comments.write_text("# only a comment\n\n")
    keys, file, admins, token, secret = (
        f"LAYERSCOPE_{n}"
        for n in ("API_KEYS", "API_KEYS_FILE", "ADMIN_TENANTS", "METRICS_TOKEN", "ID_SECRET")
    )
    return [
        Bad("a JSON list", {keys: '["KEY-ONE"]'}, f"setting {keys}"),
        Bad(
            "no colon",
            {keys: "alice:KEY-ONE,KEY-TWO"},
            f"setting {keys}, entry 2: expected 'name:key'",
        ),
        Bad("empty", {keys: ""}, f"setting {keys}, entry 1"),
        Bad(
            "a name twice",
            {keys: "alice:KEY-ONE,alice:KEY-TWO"},
            f"setting {keys}, entry 2: tenant 'alice' is named twice",
        ),
        Bad(
            "a key twice",
            {keys: "alice:KEY-ONE,bob:KEY-ONE"},
            f"setting {keys}, entry 2 (bob): the same key as another",
        ),
        Bad(
            "a short hash",
            {keys: "alice:sha256:abc"},
            f"setting {keys}, entry 1 (alice): 'sha256:' must be",
        ),
        Bad("an empty file", {file: str(empty)}, f"setting {file} ({empty}): no 'name:key' line"),
        Bad(
            "comments only",
            {file: str(comments)},
            f"setting {file} ({comments}): no 'name:key' line",
        ),
        Bad(
            "a missing file",
            {file: str(folder / "none")},
            f"setting {file} ({folder / 'none'}): cannot be read",
        ),
        Bad("a file as folder", {file: str(folder)}, f"setting {file} ({folder}): cannot be read"),
        Bad(
            "both settings",
            {"LAYERSCOPE_API_KEY": "KEY-ONE", keys: "bob:KEY-TWO"},
            f"settings LAYERSCOPE_API_KEY and {keys}: set only one",
        ),
        Bad(
            "an unknown admin",
            {keys: "alice:KEY-ONE", admins: "root"},
            f"setting {admins}: root is not a tenant",
        ),
        Bad("an admin without keys", {admins: "root"}, f"setting {admins} needs API keys"),
        Bad("a token without keys", {token: "KEY-ONE"}, f"setting {token} needs API keys"),
        Bad(
            "a token equal to a key",
            {keys: "alice:KEY-ONE", token: "KEY-ONE"},
            f"setting {token}: empty, or equal",
        ),
        Bad(
            "a bad name", {keys: "al ice:KEY-ONE"}, f"setting {keys}, entry 1: tenant name 'al ice'"
        ),
        Bad("a short id secret", {secret: "KEY-ONE"}, f"setting {secret}: shorter than 16"),
    ]


CLI_CASES = ("a JSON list", "a name twice", "a missing file")


@pytest.mark.parametrize("name", CLI_CASES)
def test_a_bad_key_setting_ends_start_up_with_one_line(tmp_path: Path, name: str) -> None:
    (case,) = [c for c in bad_cases(tmp_path) if c.name == name]
    result = serve(case.env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith("layerscope: " + case.expected), result.stderr
    assert "KEY-ONE" not in result.stderr and "KEY-TWO" not in result.stderr


@pytest.mark.parametrize("index", range(17))
def test_every_bad_key_setting_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: int
) -> None:
    case = bad_cases(tmp_path)[index]
    for name in list(os.environ):
        if name.startswith("LAYERSCOPE_"):
            monkeypatch.delenv(name)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_keys(Settings())
    assert str(error.value).startswith(case.expected), case.name
    assert "KEY-ONE" not in str(error.value) and "KEY-TWO" not in str(error.value)


def test_a_keys_file_names_tenants_with_plain_or_hashed_keys(tmp_path: Path) -> None:
    hashed = hashlib.sha256(b"bob-key").hexdigest()
    path = tmp_path / "keys"
    path.write_text(f"# tenants\nalice: alice-key\n\nbob:sha256:{hashed.upper()}\n")
    ring = load_keys(Settings(api_keys_file=path, admin_tenants="bob"))
    assert ring is not None
    assert ring.tenant(b"alice-key") == Tenant("alice")
    assert ring.tenant(b"bob-key") == Tenant("bob", admin=True)
    assert ring.tenant(f"sha256:{hashed}".encode()) is None  # the hash is not the key
    assert ring.tenant(b"alice-ke") is None and ring.tenant(b"") is None


def test_the_single_key_is_one_tenant_and_no_key_turns_auth_off() -> None:
    ring = load_keys(Settings(api_key="only-key"))
    assert ring is not None and ring.tenant(b"only-key") == Tenant("default")
    assert load_keys(Settings()) is None


def test_keys_are_compared_as_digests_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:  # the real one, watched
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tenants.hmac, "compare_digest", compare_digest)
    ring = KeyRing(
        ((hashlib.sha256(b"k1").digest(), "alice"), (hashlib.sha256(b"k2").digest(), "bob"))
    )
    assert ring.tenant(b"k1") == Tenant("alice")
    # every entry compared (no early exit on a match), digest against digest
    assert compared == [
        (hashlib.sha256(b"k1").digest(), hashlib.sha256(b"k1").digest()),
        (hashlib.sha256(b"k1").digest(), hashlib.sha256(b"k2").digest()),
    ]
