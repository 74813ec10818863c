"""Gateway settings, read once from the environment into a frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from indexer.config import SettingsError, StoreSettings

DEFAULT_SCOPE_PREFIX = "project:releng:services/tooltool/api"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway is configured with; see the README's table."""

    stores: StoreSettings = field(default_factory=StoreSettings)
    download_expires_in: int = 60
    upload_expires_in: int = 60
    allow_anonymous_public_download: bool = True
    scope_prefix: str = DEFAULT_SCOPE_PREFIX
    index_cache_seconds: float = 5.0
    index_negative_cache_seconds: float = 2.0
    index_cache_entries: int = 100_000
    root_path: str = ""
    version_file: Path = Path("version.json")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        # DOWLOAD_EXPIRES_IN (sic) is the legacy service's spelling; both are accepted.
        download_name = (
            "DOWNLOAD_EXPIRES_IN" if "DOWNLOAD_EXPIRES_IN" in environ else ("DOWLOAD_EXPIRES_IN")
        )
        return cls(
            stores=StoreSettings.from_environ(environ),
            download_expires_in=_integer(environ, download_name, 60, maximum=7 * 24 * 3600),
            upload_expires_in=_integer(environ, "UPLOAD_EXPIRES_IN", 60, maximum=7 * 24 * 3600),
            allow_anonymous_public_download=_boolean(
                environ, "ALLOW_ANONYMOUS_PUBLIC_DOWNLOAD", True
            ),
            scope_prefix=_scope_prefix(environ.get("TOOLTOOL_SCOPE_PREFIX", DEFAULT_SCOPE_PREFIX)),
            index_cache_seconds=_integer(environ, "TOOLTOOL_INDEX_CACHE_SECONDS", 5, minimum=0),
            index_negative_cache_seconds=_integer(
                environ, "TOOLTOOL_INDEX_NEGATIVE_CACHE_SECONDS", 2, minimum=0
            ),
            index_cache_entries=_integer(
                environ, "TOOLTOOL_INDEX_CACHE_ENTRIES", 100_000, minimum=0, maximum=10**8
            ),
            root_path=_root_path(environ.get("TOOLTOOL_ROOT_PATH", "")),
            version_file=Path(environ.get("TOOLTOOL_VERSION_FILE") or "version.json"),
        )


def _integer(
    environ: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int = 1,
    maximum: int | None = None,
) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected a whole number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f" and at most {maximum}" if maximum is not None else ""
        raise SettingsError(f"{name}: must be at least {minimum}{bound}, got {value}")
    return value


def _boolean(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def _scope_prefix(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value or "*" in value:
        raise SettingsError(f"TOOLTOOL_SCOPE_PREFIX: expected a scope prefix, got {value!r}")
    return value


def _root_path(value: str) -> str:
    value = value.strip().rstrip("/")
    if value and (not value.startswith("/") or "?" in value or "#" in value):
        raise SettingsError(f"TOOLTOOL_ROOT_PATH: expected a path like /tooltool, got {value!r}")
    return value
