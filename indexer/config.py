"""Store settings read from the environment, and the stores they configure.

Read once at an entry point (``from_environ``); everything else receives the
frozen settings or the :class:`indexer.stores.Regions` built from them.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import botocore.exceptions

from indexer.intake import LATE_PUT
from indexer.local_store import LOCAL_REGION, LocalStore
from indexer.s3_store import S3Store, Timeouts, make_client
from indexer.signing import Clock, UrlSigner
from indexer.stores import Regions

_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
SIGNING_KEY_FILE = ".url-signing-key"
# What a local store without regions keeps at the data directory's root.
ROOT_LAYOUT = ("index", "sha512")


class SettingsError(ValueError):
    """A missing or malformed setting; the message names it."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where objects live: S3 buckets per region, or a local directory."""

    s3_regions: tuple[tuple[str, str], ...] = ()
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    data_dir: Path = Path("tooltool-data")
    local_regions: tuple[str, ...] = ()
    public_url: str | None = None
    url_signing_key: str | None = None
    s3_connect_timeout: float = 3.0
    s3_read_timeout: float = 5.0
    s3_bulk_read_timeout: float = 120.0
    s3_max_attempts: int = 2
    min_free_bytes: int = 1024**3
    lease_seconds: float = 300.0
    render_site: bool = True
    late_put_seconds: float = LATE_PUT

    @property
    def renders_site(self) -> bool:
        return self.render_site

    @property
    def is_local(self) -> bool:
        """True for the embedded default: no S3 configured, a local directory store."""
        return not self.s3_regions

    @property
    def described(self) -> str:
        """Where the stores are, for operators."""
        if self.s3_regions:
            return "S3 regions " + ", ".join(f"{name}:{bucket}" for name, bucket in self.s3_regions)
        where = f"the local store at {self.data_dir.resolve()}"
        return where + (f" (regions {', '.join(self.local_regions)})" if self.local_regions else "")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> StoreSettings:
        s3_regions = parse_regions(environ.get("S3_REGIONS", ""))
        local_regions = parse_local_regions(environ.get("TOOLTOOL_LOCAL_REGIONS", ""))
        if s3_regions and local_regions:
            raise SettingsError(
                "TOOLTOOL_LOCAL_REGIONS: set together with S3_REGIONS; the regions are"
                " either local directories or S3 buckets, not both"
            )
        return cls(
            s3_regions=s3_regions,
            local_regions=local_regions,
            s3_endpoint_url=_endpoint(environ.get("S3_ENDPOINT_URL") or None),
            s3_access_key_id=environ.get("S3_REGIONS_ACCESS_KEY_ID") or None,
            s3_secret_access_key=environ.get("S3_REGIONS_SECRET_ACCESS_KEY") or None,
            data_dir=Path(environ.get("TOOLTOOL_DATA_DIR") or "tooltool-data"),
            public_url=_public_url(environ.get("TOOLTOOL_PUBLIC_URL") or None),
            url_signing_key=environ.get("TOOLTOOL_URL_SIGNING_KEY") or None,
            s3_connect_timeout=_number(environ, "S3_CONNECT_TIMEOUT", 3.0, maximum=3600),
            s3_read_timeout=_number(environ, "S3_READ_TIMEOUT", 5.0, maximum=3600),
            s3_bulk_read_timeout=_number(environ, "S3_INDEXER_READ_TIMEOUT", 120.0, maximum=3600),
            s3_max_attempts=int(
                _number(environ, "S3_MAX_ATTEMPTS", 2, whole=True, minimum=1, maximum=10)
            ),
            min_free_bytes=int(
                _number(environ, "TOOLTOOL_MIN_FREE_BYTES", 1024**3, whole=True, minimum=0)
            ),
            render_site=_flag(environ, "TOOLTOOL_RENDER_SITE") is not False,
            lease_seconds=_number(
                environ, "TOOLTOOL_LEASE_SECONDS", 300.0, minimum=1, maximum=86400
            ),
            late_put_seconds=_number(
                environ, "TOOLTOOL_LATE_PUT_SECONDS", LATE_PUT, minimum=0, maximum=7 * 86400
            ),
        )


def _flag(environ: Mapping[str, str], name: str) -> bool | None:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw[:50]!r}")


def _number(
    environ: Mapping[str, str],
    name: str,
    default: float,
    *,
    whole: bool = False,
    minimum: float = 0.001,
    maximum: float = 2**62,
) -> float:
    """A positive number of seconds (or a count, `whole`) from `name`; SettingsError if not."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise SettingsError(f"{name}: expected {kind}, got {raw[:50]!r}") from None
    if not minimum <= value <= maximum or value != value:
        raise SettingsError(f"{name}: must be between {minimum} and {maximum}, got {raw!r}")
    return value


def parse_regions(value: str) -> tuple[tuple[str, str], ...]:
    """Parse ``S3_REGIONS="us-east-1:bucket-a;us-west-2:bucket-b"`` (the legacy format)."""
    regions: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in value.split(";"))):
        region, separator, bucket = (text.strip() for text in item.partition(":"))
        if not separator:
            raise SettingsError(f"S3_REGIONS: expected 'region:bucket;region:bucket', got {item!r}")
        if not _REGION.fullmatch(region):
            raise SettingsError(
                f"S3_REGIONS: {region!r} is not a region name (lowercase letters, digits, -)"
            )
        if not 3 <= len(bucket) <= 63:
            raise SettingsError(
                f"S3_REGIONS: bucket name {bucket!r} must be 3 to 63 characters long"
            )
        if not _BUCKET.fullmatch(bucket):
            raise SettingsError(
                f"S3_REGIONS: bucket name {bucket!r} may hold only lowercase letters, digits,"
                " dots and hyphens, and must begin and end with a letter or digit"
            )
        if region in dict(regions):
            raise SettingsError(f"S3_REGIONS: region {region} is listed twice")
        # Each region's copies must be apart: one bucket under two names is one copy
        # counted twice (and copied onto itself).
        for other, other_bucket in regions:
            if other_bucket == bucket:
                raise SettingsError(
                    f"S3_REGIONS: bucket {bucket} is listed for both {other} and {region};"
                    " each region needs a bucket of its own"
                )
        regions.append((region, bucket))
    return tuple(regions)


def parse_local_regions(value: str) -> tuple[str, ...]:
    """Parse ``TOOLTOOL_LOCAL_REGIONS="east,west"``: the local store's regions, named as
    S3_REGIONS names them, the first holding the index; () when unset."""
    if not value.strip():
        return ()
    names = [name.strip() for name in value.split(",")]
    regions: list[str] = []
    for name in names:
        if not _REGION.fullmatch(name):
            raise SettingsError(
                f"TOOLTOOL_LOCAL_REGIONS: {name[:70]!r} is not a region name"
                " (lowercase letters, digits, -; names separated by commas)"
            )
        if name in regions:
            raise SettingsError(f"TOOLTOOL_LOCAL_REGIONS: region {name} is listed twice")
        regions.append(name)
    return tuple(regions)


def _endpoint(value: str | None) -> str | None:
    parts = http_url("S3_ENDPOINT_URL", value)
    if parts is None:
        return None
    if parts.scheme == "http" and parts.port is None:
        # The legacy client connects to 443 for an http URL without a port, so
        # signed URLs must always carry an explicit one.
        parts = parts._replace(netloc=f"{parts.netloc}:80")
    return urlunsplit(parts)


def _public_url(value: str | None) -> str | None:
    parts = http_url("TOOLTOOL_PUBLIC_URL", value)
    if parts is None:
        return None
    if parts.query or parts.fragment:
        raise SettingsError("TOOLTOOL_PUBLIC_URL: a base URL has no query or fragment")
    if parts.scheme == "http" and parts.port is None:
        parts = parts._replace(netloc=f"{parts.netloc}:80")
    return urlunsplit(parts).rstrip("/")


def http_url(name: str, value: str | None) -> SplitResult | None:
    """The http(s) URL setting `name` holds, checked: a host, a valid port, no credentials
    (they would end up in signed URLs and logs: S3 credentials have their own settings)."""
    if value is None:
        return None
    shown = value if "@" not in value else "(a URL with credentials)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise SettingsError(f"{name}: expected an http(s) URL, got {shown!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name}: expected an http(s) URL, got {shown!r}")
    if parts.username is not None or parts.password is not None:
        raise SettingsError(f"{name}: a URL may not hold credentials")
    if port == 0:
        raise SettingsError(f"{name}: port 0 is not a port")
    return parts


def open_regions(
    settings: StoreSettings, *, clock: Clock = time.time, bulk: bool = False
) -> Regions:
    """The configured stores: one S3Store per region, or a LocalStore per local region.

    `bulk` stores are the indexer's: their server-side copies and streamed
    uploads, which answer once a whole blob is written, wait longer for an
    answer (S3_INDEXER_READ_TIMEOUT) than any other call (S3_READ_TIMEOUT).
    """
    if settings.is_local:
        return _local_regions(settings, clock)
    timeouts = Timeouts(
        connect=settings.s3_connect_timeout,
        read=settings.s3_read_timeout,
        attempts=settings.s3_max_attempts,
        # The gateway's requests fail fast for a moment after one found the store
        # unreachable; the indexer's passes just wait for the next.
        pause_after_failure=0.0 if bulk else settings.s3_connect_timeout,
    )
    # Only copies and streamed uploads wait longer: a pass finds a hung store out as
    # soon as a request would.
    copy_timeouts = replace(timeouts, read=settings.s3_bulk_read_timeout) if bulk else None
    try:
        return _s3_regions(settings, timeouts, copy_timeouts)
    except botocore.exceptions.BotoCoreError as exc:  # a region or endpoint botocore refuses
        raise SettingsError(f"S3_REGIONS: {exc}") from None


def _local_regions(settings: StoreSettings, clock: Clock) -> Regions:
    """One region ``local`` at the data directory's root (the layout before regions), or
    each of TOOLTOOL_LOCAL_REGIONS in a directory of its own there, sharing one signing key."""
    try:
        _refuse_root_layout(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        signer = UrlSigner(_signing_key(settings), clock=clock)
        roots = {region: settings.data_dir / region for region in settings.local_regions} or {
            LOCAL_REGION: settings.data_dir
        }
        return Regions(
            LocalStore(
                root,
                signer=signer,
                region=region,
                public_url=settings.public_url,
                min_free_bytes=settings.min_free_bytes,
            )
            for region, root in roots.items()
        )
    except OSError as exc:
        raise SettingsError(
            f"TOOLTOOL_DATA_DIR: cannot use {settings.data_dir}: {exc.strerror or exc}"
        ) from None


def _refuse_root_layout(settings: StoreSettings) -> None:
    """With TOOLTOOL_LOCAL_REGIONS, a data directory holding the single-region layout
    (index and blobs at its root) is refused: the regions would start empty beside it."""
    if not settings.local_regions:
        return
    found = [
        name
        for name in ROOT_LAYOUT
        if name not in settings.local_regions and (settings.data_dir / name).exists()
    ]
    if found:
        first = settings.local_regions[0]
        raise SettingsError(
            f"TOOLTOOL_LOCAL_REGIONS: {settings.data_dir} holds a store without regions"
            f" ({', '.join(name + '/' for name in found)} at its root), which the regions"
            f" would not see; to keep it as region {first}, move every entry of"
            f" {settings.data_dir} not starting with '.' into {settings.data_dir / first}/,"
            " or unset TOOLTOOL_LOCAL_REGIONS"
        )


def _s3_regions(
    settings: StoreSettings, timeouts: Timeouts, copy_timeouts: Timeouts | None
) -> Regions:
    def client(region: str, timeouts: Timeouts) -> Any:
        return make_client(
            region,
            endpoint_url=settings.s3_endpoint_url,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            timeouts=timeouts,
        )

    return Regions(
        S3Store(
            client(region, timeouts),
            bucket,
            region=region,
            pause_after_failure=timeouts.pause_after_failure,
            copy_client=None if copy_timeouts is None else client(region, copy_timeouts),
        )
        for region, bucket in settings.s3_regions
    )


def _signing_key(settings: StoreSettings) -> bytes:
    """TOOLTOOL_URL_SIGNING_KEY, else a key kept in the data directory.

    Keeping it there lets every gateway sharing the directory, and a restarted
    one, accept the URLs the others signed.
    """
    if settings.url_signing_key is not None:
        if len(settings.url_signing_key) < 16:
            raise SettingsError("TOOLTOOL_URL_SIGNING_KEY: must be at least 16 characters")
        return settings.url_signing_key.encode("utf-8")
    return secret_file(settings.data_dir / SIGNING_KEY_FILE, "TOOLTOOL_URL_SIGNING_KEY").encode()


def secret_file(path: Path, setting: str) -> str:
    """A random secret kept in `path` (mode 0600), created on first use.

    Processes sharing the directory agree on it; `setting` names the variable
    that replaces it, for error messages.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot create {path}: {exc.strerror}") from None
    else:
        with os.fdopen(descriptor, "w") as stream:
            stream.write(secrets.token_hex(32))
    for _ in range(50):
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise SettingsError(f"{setting}: cannot read {path}: {reason}") from None
        if key:
            if len(key) < 16:
                raise SettingsError(f"{setting}: {path} holds a key shorter than 16 characters")
            return key
        time.sleep(0.01)  # another process created the file and is writing it
    raise SettingsError(f"{setting}: {path} is empty")
