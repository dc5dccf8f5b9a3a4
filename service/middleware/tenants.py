"""API keys and their tenants, read from the settings once at start-up.

`LAYERSCOPE_API_KEYS` ("name:key,name:key") or `LAYERSCOPE_API_KEYS_FILE` (one "name:key" a
line; blank lines and "#" comments skipped) name a tenant per key; a key may be written as
"sha256:<64 hex digits>" of itself, so the file need not hold it. `LAYERSCOPE_API_KEY` alone
is one tenant, "default". Any mistake raises `ConfigError` naming the setting and the entry,
never the key: a server must not start with less authentication than its operator asked for.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from model_registry.errors import ConfigError
from service.settings import Settings
from service.workers.tenancy import Tenant

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
HASHED = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
DEFAULT_TENANT = "default"
MIN_SECRET = 16


def digest(key: str | bytes) -> bytes:
    """The SHA-256 a key is kept and compared as."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


@dataclass(frozen=True)
class KeyRing:
    """Tenants by key digest, the admin tenants and the metrics scrape token's digest."""

    entries: tuple[tuple[bytes, str], ...]
    admins: frozenset[str] = frozenset()
    metrics_token: bytes | None = None

    def tenant(self, key: bytes) -> Tenant | None:
        """The tenant of `key`, or None. Every entry is compared, each in constant time
        (`hmac.compare_digest` on SHA-256 digests), so the time taken says nothing about
        which entry, or how much of one, matched."""
        given = digest(key)
        found: str | None = None
        for expected, name in self.entries:
            if hmac.compare_digest(given, expected):
                found = name
        return None if found is None else Tenant(found, admin=found in self.admins)

    def scrapes(self, key: bytes) -> bool:
        """Whether `key` is the metrics scrape token (compared in constant time)."""
        token = self.metrics_token
        return token is not None and hmac.compare_digest(digest(key), token)


def _entry(text: str, where: str) -> tuple[bytes, str]:
    name, colon, key = (part.strip() for part in text.partition(":"))
    if not colon or not key:
        raise ConfigError(f"{where}: expected 'name:key'")
    if not NAME.match(name):
        raise ConfigError(
            f"{where}: tenant name {name[:40]!r} must be 1-64 letters, digits or _.@- "
            "(starting with a letter or digit)"
        )
    if any(c.isspace() or c == "," for c in key):
        raise ConfigError(f"{where} ({name}): the key holds a space or a comma")
    hashed = HASHED.match(key)
    if key.startswith("sha256:") and hashed is None:
        raise ConfigError(f"{where} ({name}): 'sha256:' must be followed by 64 hex digits")
    return (bytes.fromhex(hashed.group(1)) if hashed else digest(key)), name


def _entries(settings: Settings) -> tuple[list[tuple[bytes, str]], str]:
    listed, file = settings.api_keys, settings.api_keys_file
    single = settings.api_key
    settings_ = (("API_KEY", single), ("API_KEYS", listed), ("API_KEYS_FILE", file))
    given = [name for name, value in settings_ if value is not None]
    if len(given) > 1:
        names = " and ".join(f"LAYERSCOPE_{n}" for n in given)
        raise ConfigError(f"settings {names}: set only one of them")
    if single is not None:
        if not single.get_secret_value().strip():
            raise ConfigError("setting LAYERSCOPE_API_KEY: empty key")
        return [(digest(single.get_secret_value()), DEFAULT_TENANT)], "LAYERSCOPE_API_KEY"
    if listed is not None:
        setting = "setting LAYERSCOPE_API_KEYS"
        parts = listed.get_secret_value().split(",")
        entries = [_entry(part, f"{setting}, entry {i}") for i, part in enumerate(parts, 1)]
        return entries, setting
    if file is not None:
        setting = f"setting LAYERSCOPE_API_KEYS_FILE ({file})"
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{setting}: cannot be read ({type(exc).__name__})") from exc
        entries = [
            _entry(line, f"{setting}, line {number}")
            for number, line in enumerate(lines, 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not entries:
            raise ConfigError(f"{setting}: no 'name:key' line")
        return entries, setting
    return [], ""


def load_keys(settings: Settings) -> KeyRing | None:
    """The key ring the settings describe, or None when they set no key (auth off).

    Raises:
        ConfigError: a malformed entry, a repeated name or key, an unreadable or empty
            file, two key settings at once, an admin or token without keys, or a short
            `LAYERSCOPE_ID_SECRET`.
    """
    secret = settings.id_secret
    if secret is not None and len(secret.get_secret_value()) < MIN_SECRET:
        raise ConfigError(f"setting LAYERSCOPE_ID_SECRET: shorter than {MIN_SECRET} characters")
    entries, setting = _entries(settings)
    admins = frozenset(n.strip() for n in settings.admin_tenants.split(",") if n.strip())
    token = settings.metrics_token
    if not entries:
        for name, value in (("ADMIN_TENANTS", admins or None), ("METRICS_TOKEN", token)):
            if value is not None:
                raise ConfigError(
                    f"setting LAYERSCOPE_{name} needs API keys (LAYERSCOPE_API_KEYS, "
                    "LAYERSCOPE_API_KEYS_FILE or LAYERSCOPE_API_KEY)"
                )
        return None
    names: set[str] = set()
    digests: set[bytes] = set()
    for number, (key, name) in enumerate(entries, 1):
        if name in names:
            raise ConfigError(f"{setting}, entry {number}: tenant {name!r} is named twice")
        if key in digests:
            raise ConfigError(f"{setting}, entry {number} ({name}): the same key as another")
        names.add(name)
        digests.add(key)
    if unknown := sorted(admins - names):
        raise ConfigError(
            f"setting LAYERSCOPE_ADMIN_TENANTS: {', '.join(unknown)} is not a tenant of {setting}"
        )
    metrics = None
    if token is not None:
        metrics = digest(token.get_secret_value())
        if not token.get_secret_value().strip() or metrics in digests:
            raise ConfigError("setting LAYERSCOPE_METRICS_TOKEN: empty, or equal to an API key")
    return KeyRing(tuple(entries), admins, metrics)
