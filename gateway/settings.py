"""Gateway settings, read once from the environment into a frozen object."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlunsplit

from gateway.cloudfront import load_private_key
from gateway.forwarded import TrustedProxies
from indexer.config import SettingsError, StoreSettings, http_url
from indexer.logs import LOG_FORMATS
from indexer.sentry import sentry_dsn

DEFAULT_SCOPE_PREFIX = "project:releng:services/tooltool/api"
_CLOUDFRONT = ("CLOUDFRONT_URL", "CLOUDFRONT_KEY_ID", "CLOUDFRONT_PRIVATE_KEY")
_CLOUDFRONT_KEY_ID = re.compile(r"[A-Za-z0-9]{1,128}")
# A path the signed policies can hold as it is (no character JSON or URLs would escape).
_CLOUDFRONT_PATH = re.compile(r"[A-Za-z0-9._~/-]*")
MAX_WORKERS = 64
DEFAULT_METRICS_NETWORKS = "127.0.0.0/8,::1"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Identity provider, JWT keys and token lifetimes."""

    identity_provider: str = "clients-file"  # or "taskcluster"
    taskcluster_root_url: str | None = None
    clients_file: Path | None = None
    jwt_algorithm: str = "HS256"
    jwt_secret: str | None = None
    jwt_private_key: Path | None = None
    jwt_previous_public_keys: tuple[Path, ...] = ()
    jwt_issuer: str = "tooltool"
    jwt_audience: str = "tooltool"
    token_lifetime: int = 900
    token_max_lifetime: int = 3600
    hawk_skew: int = 60
    hawk_nonce_cache_bytes: int = 64 * 1024 * 1024
    trusted_proxies: str = ""
    taskcluster_timeout: int = 5

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AuthSettings:
        root_url = environ.get("TASKCLUSTER_ROOT_URL") or None
        http_url("TASKCLUSTER_ROOT_URL", root_url)
        provider = environ.get("TOOLTOOL_IDENTITY_PROVIDER") or (
            "taskcluster" if root_url else "clients-file"
        )
        if provider not in ("taskcluster", "clients-file"):
            raise SettingsError(
                "TOOLTOOL_IDENTITY_PROVIDER: expected taskcluster or clients-file,"
                f" got {provider!r}"
            )
        if provider == "taskcluster" and not root_url:
            raise SettingsError("TASKCLUSTER_ROOT_URL: required by the taskcluster provider")
        algorithm = environ.get("TOOLTOOL_JWT_ALGORITHM") or "HS256"
        if algorithm not in ("HS256", "RS256", "ES256", "EdDSA"):
            raise SettingsError(
                f"TOOLTOOL_JWT_ALGORITHM: expected HS256, RS256, ES256 or EdDSA, got {algorithm!r}"
            )
        private_key = _path(environ, "TOOLTOOL_JWT_PRIVATE_KEY")
        if algorithm != "HS256" and private_key is None:
            raise SettingsError(f"TOOLTOOL_JWT_PRIVATE_KEY: required with {algorithm}")
        lifetime = _integer(environ, "TOOLTOOL_TOKEN_LIFETIME", 900, maximum=7 * 24 * 3600)
        max_lifetime = _integer(environ, "TOOLTOOL_TOKEN_MAX_LIFETIME", 3600, maximum=7 * 24 * 3600)
        if lifetime > max_lifetime:
            raise SettingsError("TOOLTOOL_TOKEN_LIFETIME: longer than TOOLTOOL_TOKEN_MAX_LIFETIME")
        proxies = environ.get("TOOLTOOL_TRUSTED_PROXIES", "")
        try:
            TrustedProxies.parse(proxies)
        except ValueError as exc:
            raise SettingsError(f"TOOLTOOL_TRUSTED_PROXIES: {exc}") from None
        return cls(
            identity_provider=provider,
            taskcluster_root_url=root_url,
            clients_file=_path(environ, "TOOLTOOL_CLIENTS_FILE"),
            jwt_algorithm=algorithm,
            jwt_secret=environ.get("TOOLTOOL_JWT_SECRET") or None,
            jwt_private_key=private_key,
            jwt_previous_public_keys=tuple(
                Path(item.strip())
                for item in environ.get("TOOLTOOL_JWT_PREVIOUS_PUBLIC_KEYS", "").split(",")
                if item.strip()
            ),
            jwt_issuer=environ.get("TOOLTOOL_JWT_ISSUER") or "tooltool",
            jwt_audience=environ.get("TOOLTOOL_JWT_AUDIENCE") or "tooltool",
            token_lifetime=lifetime,
            token_max_lifetime=max_lifetime,
            hawk_skew=_integer(environ, "TOOLTOOL_HAWK_SKEW", 60, maximum=3600),
            hawk_nonce_cache_bytes=_integer(
                environ, "TOOLTOOL_HAWK_NONCE_CACHE_BYTES", 64 * 1024 * 1024, minimum=1024 * 1024
            ),
            taskcluster_timeout=_integer(environ, "TASKCLUSTER_TIMEOUT", 5, maximum=300),
            trusted_proxies=proxies,
        )


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How ``tooltool-gateway`` serves: address, log format, HTTP limits, worker processes."""

    host: str = "127.0.0.1"
    port: int = 8000
    log_format: str = "mozlog"
    max_header_line: int = 16 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: int = 15
    workers: int = 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ServerSettings:
        log_format = (environ.get("TOOLTOOL_LOG_FORMAT") or "mozlog").strip()
        if log_format not in LOG_FORMATS:
            raise SettingsError(f"TOOLTOOL_LOG_FORMAT: expected mozlog or text, got {log_format!r}")
        max_line = _integer(environ, "TOOLTOOL_MAX_HEADER_LINE", 16 * 1024, minimum=1024)
        max_bytes = _integer(environ, "TOOLTOOL_MAX_HEADER_BYTES", 64 * 1024, minimum=1024)
        if max_line > max_bytes:
            raise SettingsError("TOOLTOOL_MAX_HEADER_LINE: larger than TOOLTOOL_MAX_HEADER_BYTES")
        return cls(
            host=(environ.get("HOST") or "127.0.0.1").strip(),
            port=_integer(environ, "PORT", 8000, minimum=0, maximum=65535),
            log_format=log_format,
            max_header_line=max_line,
            max_header_bytes=max_bytes,
            header_timeout=_integer(environ, "TOOLTOOL_HEADER_TIMEOUT", 15, maximum=3600),
            workers=_integer(environ, "TOOLTOOL_WORKERS", 1, maximum=MAX_WORKERS),
        )


@dataclass(frozen=True, slots=True)
class CloudFrontSettings:
    """A CloudFront distribution in front of the bucket, and the key pair its signed URLs
    are signed with (:mod:`gateway.cloudfront`)."""

    url: str
    key_id: str
    private_key: str = field(repr=False)  # PEM text: never in a repr, a log or a message

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CloudFrontSettings | None:
        """All of CLOUDFRONT_URL, CLOUDFRONT_KEY_ID and CLOUDFRONT_PRIVATE_KEY, or None."""
        values = {name: environ.get(name, "").strip() for name in _CLOUDFRONT}
        given = [name for name in _CLOUDFRONT if values[name]]
        if not given:
            return None
        missing = [name for name in _CLOUDFRONT if not values[name]]
        if missing:
            raise SettingsError(f"{missing[0]}: required with {' and '.join(given)}")
        parts = http_url("CLOUDFRONT_URL", values["CLOUDFRONT_URL"])
        # https only: the legacy client cannot follow an http URL without a port, and a
        # port of CloudFront's own would have to be in every signed policy.
        if (
            parts is None
            or parts.scheme != "https"
            or not _CLOUDFRONT_PATH.fullmatch(parts.path)
            or parts.query
            or parts.fragment
        ):
            raise SettingsError(
                "CLOUDFRONT_URL: expected the https base URL of a distribution,"
                " like https://d111111abcdef8.cloudfront.net"
            )
        key_id = values["CLOUDFRONT_KEY_ID"]
        if not _CLOUDFRONT_KEY_ID.fullmatch(key_id):
            raise SettingsError(
                f"CLOUDFRONT_KEY_ID: expected a CloudFront key ID (letters and digits),"
                f" got {key_id[:50]!r}"
            )
        # Line breaks may come escaped, as many tools write multi-line values.
        pem = values["CLOUDFRONT_PRIVATE_KEY"].replace("\\n", "\n").strip()
        try:
            load_private_key(pem)
        except ValueError as exc:
            raise SettingsError(f"CLOUDFRONT_PRIVATE_KEY: {exc}") from None
        return cls(url=urlunsplit(parts).rstrip("/"), key_id=key_id, private_key=pem)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway is configured with; see the README's table."""

    stores: StoreSettings = field(default_factory=StoreSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    download_expires_in: int = 60
    # How long a signed download URL is handed out again: each caller still gets at
    # least `download_expires_in` minus this of validity (gateway/download_urls.py).
    signed_url_reuse_seconds: int = 5
    upload_expires_in: int = 60
    allow_anonymous_public_download: bool = True
    scope_prefix: str = DEFAULT_SCOPE_PREFIX
    index_cache_seconds: float = 5.0
    index_negative_cache_seconds: float = 2.0
    index_cache_entries: int = 100_000
    root_path: str = ""
    version_file: Path = Path("version.json")
    embedded_indexer: bool | None = None  # None: on for the local store, off with S3
    indexer_interval: int = 2
    max_pending_files: int = 2000
    max_pending_bytes: int = 50 * 1024**3
    heartbeat_timeout: int = 3
    # A check's result answers the heartbeats of this many seconds after it (0: none).
    heartbeat_recheck_seconds: int = 2
    # A separate indexer (S3, no embedded loop) must have finished a pass within this
    # many seconds, or be running one, for /__heartbeat__ to pass (0: not checked) ...
    heartbeat_indexer_seconds: int = 900
    # ... and staged uploads must not wait longer than this for a pass to start.
    heartbeat_upload_seconds: int = 300
    cloudfront: CloudFrontSettings | None = None
    # Who may read /__metrics__ (gateway/metrics.py): addresses or networks.
    metrics_networks: str = DEFAULT_METRICS_NETWORKS
    # Where worker processes share their metrics (set by tooltool-gateway --workers).
    metrics_dir: Path | None = None
    sentry_dsn: str | None = field(default=None, repr=False)  # holds Sentry's key

    @property
    def runs_embedded_indexer(self) -> bool:
        return self.stores.is_local if self.embedded_indexer is None else self.embedded_indexer

    @property
    def checks_indexer(self) -> bool:
        """Whether /__heartbeat__ checks a separate indexer's liveness: on S3 without the
        embedded loop (where a process of this gateway is the indexer, it is alive)."""
        return (
            not self.stores.is_local
            and not self.runs_embedded_indexer
            and self.heartbeat_indexer_seconds > 0
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        # DOWLOAD_EXPIRES_IN (sic) is the legacy service's spelling; both are accepted.
        download_name = (
            "DOWNLOAD_EXPIRES_IN" if "DOWNLOAD_EXPIRES_IN" in environ else ("DOWLOAD_EXPIRES_IN")
        )
        download_expires_in = _integer(environ, download_name, 60, maximum=7 * 24 * 3600)
        stores = StoreSettings.from_environ(environ)
        cloudfront = CloudFrontSettings.from_environ(environ)
        if cloudfront is not None and stores.is_local:
            raise SettingsError(
                "CLOUDFRONT_URL: a CloudFront distribution serves an S3 bucket; set S3_REGIONS"
            )
        return cls(
            stores=stores,
            auth=AuthSettings.from_environ(environ),
            server=ServerSettings.from_environ(environ),
            download_expires_in=download_expires_in,
            signed_url_reuse_seconds=_reuse_seconds(environ, download_name, download_expires_in),
            # At most 23 h: a PUT URL must never outlive its pending record (a day).
            upload_expires_in=_integer(environ, "UPLOAD_EXPIRES_IN", 60, maximum=23 * 3600),
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
            embedded_indexer=(
                _boolean(environ, "TOOLTOOL_EMBEDDED_INDEXER", False)
                if environ.get("TOOLTOOL_EMBEDDED_INDEXER", "").strip()
                else None
            ),
            indexer_interval=_integer(environ, "TOOLTOOL_INDEXER_INTERVAL", 2, maximum=3600),
            max_pending_files=_integer(environ, "TOOLTOOL_MAX_PENDING_FILES", 2000),
            max_pending_bytes=_integer(environ, "TOOLTOOL_MAX_PENDING_BYTES", 50 * 1024**3),
            heartbeat_timeout=_integer(environ, "TOOLTOOL_HEARTBEAT_TIMEOUT", 3, maximum=60),
            heartbeat_recheck_seconds=_integer(
                environ, "TOOLTOOL_HEARTBEAT_RECHECK_SECONDS", 2, minimum=0, maximum=60
            ),
            heartbeat_indexer_seconds=_integer(
                environ, "TOOLTOOL_HEARTBEAT_INDEXER_SECONDS", 900, minimum=0, maximum=7 * 86400
            ),
            heartbeat_upload_seconds=_integer(
                environ, "TOOLTOOL_HEARTBEAT_UPLOAD_SECONDS", 300, maximum=7 * 86400
            ),
            cloudfront=cloudfront,
            metrics_networks=_metrics_networks(environ.get("TOOLTOOL_METRICS_NETWORKS", "")),
            sentry_dsn=sentry_dsn(environ),
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


def _reuse_seconds(environ: Mapping[str, str], download_name: str, expires_in: int) -> int:
    """TOOLTOOL_SIGNED_URL_REUSE_SECONDS: under the URLs' validity, so every caller gets some.

    The default is a tenth of that validity, at most 5 s (0, no reuse, under 10 s).
    """
    name = "TOOLTOOL_SIGNED_URL_REUSE_SECONDS"
    if not environ.get(name, "").strip():
        return min(5, expires_in // 10)
    value = _integer(environ, name, 0, minimum=0)
    if value >= expires_in:
        raise SettingsError(
            f"{name}: must be less than {download_name} ({expires_in}), got {value}"
        )
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


def _metrics_networks(value: str) -> str:
    """TOOLTOOL_METRICS_NETWORKS: addresses or networks, ``none`` for nobody; blank is
    loopback."""
    value = value.strip()
    if not value:
        return DEFAULT_METRICS_NETWORKS
    if value.lower() == "none":
        return ""
    try:
        TrustedProxies.parse(value)
    except ValueError as exc:
        raise SettingsError(f"TOOLTOOL_METRICS_NETWORKS: {exc}") from None
    return value


def _root_path(value: str) -> str:
    value = value.strip().rstrip("/")
    if value and (not value.startswith("/") or "?" in value or "#" in value):
        raise SettingsError(f"TOOLTOOL_ROOT_PATH: expected a path like /tooltool, got {value!r}")
    return value


def _path(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name, "").strip()
    return Path(value) if value else None
