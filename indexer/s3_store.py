"""The S3 store: one bucket of one region, through boto3, on AWS or any S3-compatible endpoint.

botocore errors never leave this module: :func:`_translated` turns them into
:mod:`indexer.stores` errors at the edge.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from indexer.sigv4 import Presigner
from indexer.stores import (
    OCTET_STREAM,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Store,
    StoreError,
    StoreUnavailable,
    check_key,
    stream_copy,
)

logger = logging.getLogger(__name__)

SINGLE_COPY_LIMIT = 5 * 1024**3  # S3's CopyObject limit
# Copies up to this size answer within any read timeout (S3 copies within its servers,
# SeaweedFS at some 300 MiB/s): only larger ones wait on the copy client's longer one.
QUICK_COPY_LIMIT = 64 * 1024**2
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
# GetBucketVersioning refused to credentials without s3:GetBucketVersioning, or unknown to
# an S3-compatible server: the bucket is taken as unversioned (the slower, safe way).
_UNKNOWN_VERSIONING_CODES = frozenset({"AccessDenied", "NotImplemented", "MethodNotAllowed"})
_DELETE_BATCH = 1000  # DeleteObjects' limit
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long an S3 call may wait: to connect, for each read, and how often it is tried.

    A hung store costs a request at most about ``attempts * (connect + read)``.
    """

    connect: float = 3.0
    read: float = 5.0
    attempts: int = 2
    pause_after_failure: float = 0.0


def make_client(
    region: str,
    *,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    timeouts: Timeouts = Timeouts(),
) -> Any:
    """A boto3 S3 client that presigns with SigV4 (see :func:`client_config`)."""
    return boto3.session.Session().client(
        "s3",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=client_config(endpoint_url, timeouts),
    )


def client_config(endpoint_url: str | None, timeouts: Timeouts = Timeouts()) -> Config:
    """The botocore configuration of :func:`make_client`'s clients.

    botocore's default for us-east-1 with a custom endpoint is SigV2, which
    signs Content-Type and breaks plain curl PUTs; SigV4 everywhere avoids it.
    A custom endpoint (SeaweedFS, MinIO) is addressed path-style, AWS as botocore
    chooses (``auto``): :mod:`indexer.sigv4` signs URLs for both.
    """
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        retries={"total_max_attempts": timeouts.attempts, "mode": "standard"},
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
        max_pool_connections=64,
    )


class S3Store:
    """A :class:`indexer.stores.Store` over one S3 bucket."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        region: str,
        copy_threshold: int = SINGLE_COPY_LIMIT,
        pause_after_failure: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        copy_client: Any | None = None,
    ) -> None:
        self.client = client
        # Server-side copies of large objects and streamed uploads answer once the server
        # has written the whole blob (minutes, for gigabytes): they may get a client with a
        # longer read timeout, so that every other call still finds a hung store out in
        # seconds.
        self.copy_client = client if copy_client is None else copy_client
        self.bucket = bucket
        self.region = region
        self.copy_threshold = copy_threshold
        # After a call that could not reach the store, calls fail at once for this long
        # (then one tries again): requests queued behind a hung store do not each wait
        # out their own timeouts.
        self._pause = pause_after_failure
        self._clock = clock
        self._unreachable_until = 0.0
        # Presigned URLs are signed here (indexer.sigv4), as botocore signs them but
        # about 30 times cheaper: every download is one.
        self._presigner = Presigner(client, bucket)
        self._versioning: str | None = None  # the bucket's status, once asked ("" for never)

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r}, region={self.region!r})"

    @property
    def endpoint(self) -> str:
        """The bucket's address, for messages to operators."""
        return f"{self.client.meta.endpoint_url}/{self.bucket}"

    def head(self, key: str) -> ObjectInfo:
        with self._translated(key):
            answer = self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        return ObjectInfo(key, answer["ContentLength"], answer["ETag"], _version(answer))

    def get(self, key: str) -> tuple[bytes, ObjectInfo]:
        with self._translated(key):
            answer = self.client.get_object(Bucket=self.bucket, Key=check_key(key))
            data = answer["Body"].read()
        return data, ObjectInfo(key, len(data), answer["ETag"], _version(answer))

    @contextlib.contextmanager
    def open(
        self, key: str, *, if_match: str | None = None, version_id: str | None = None
    ) -> Iterator[BinaryIO]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": check_key(key)}
        if if_match is not None:
            params["IfMatch"] = if_match
        if version_id is not None:
            params["VersionId"] = version_id
        with self._translated(key):
            answer = self.client.get_object(**params)
        body = answer["Body"]
        try:
            yield _Translating(body, self, key)  # type: ignore[misc]
        finally:
            body.close()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._translated(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    yield ObjectInfo(item["Key"], item["Size"], item["ETag"])

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = OCTET_STREAM,
    ) -> ObjectInfo:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": check_key(key),
            "Body": data,
            "ContentType": content_type,
        }
        if if_none_match:
            params["IfNoneMatch"] = "*"
        if if_match is not None:
            params["IfMatch"] = if_match
        with self._translated(key):
            answer = self.client.put_object(**params)
        return ObjectInfo(key, len(data), answer["ETag"], _version(answer))

    def is_versioned(self) -> bool:
        return self._versioning_status() == "Enabled"

    def _versioning_status(self) -> str:
        """The bucket's versioning ("Enabled", "Suspended", or "" for never enabled),
        asked once."""
        if self._versioning is None:
            try:
                with self._translated(""):
                    answer = self.client.get_bucket_versioning(Bucket=self.bucket)
            except StoreUnavailable as exc:
                code = _client_error_code(exc.__cause__)
                if code not in _UNKNOWN_VERSIONING_CODES:
                    raise
                logger.warning(
                    "%s: cannot tell whether %s is versioned (%s): taken as unversioned",
                    self.region,
                    self.endpoint,
                    code,
                )
                answer = {}
            self._versioning = str(answer.get("Status") or "")
        return self._versioning

    def put_stream(self, key: str, stream: BinaryIO, *, content_type: str = OCTET_STREAM) -> None:
        # upload_fileobj switches to multipart for large streams; S3 makes
        # the object visible only when the upload completes, so it is whole.
        with self._translated(key):
            self.copy_client.upload_fileobj(
                stream, self.bucket, check_key(key), ExtraArgs={"ContentType": content_type}
            )

    def copy(
        self,
        source: str,
        destination: str,
        *,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ObjectInfo:
        return self._copy(self, source, destination, if_match, version_id)

    def copy_from(self, source: Store, key: str, *, if_match: str | None = None) -> ObjectInfo:
        if not isinstance(source, S3Store):
            return stream_copy(source, self, key, if_match=if_match)
        # This region's client copies from the other region's bucket: S3 copies across
        # regions (and SeaweedFS across buckets) within its own servers.
        return self._copy(source, key, key, if_match)

    def _copy(
        self,
        origin: S3Store,
        source: str,
        destination: str,
        if_match: str | None,
        version_id: str | None = None,
    ) -> ObjectInfo:
        copy_source = {"Bucket": origin.bucket, "Key": check_key(source)}
        if version_id is not None:
            copy_source["VersionId"] = version_id
        conditions = {"CopySourceIfMatch": if_match} if if_match is not None else {}
        with origin._translated(source):
            head = origin.client.head_object(**copy_source, **_head_conditions(if_match))
        with self._translated(source):
            size = head["ContentLength"]
            if size <= self.copy_threshold:
                client = self.client if size <= QUICK_COPY_LIMIT else self.copy_client
                client.copy_object(
                    Bucket=self.bucket,
                    Key=check_key(destination),
                    CopySource=copy_source,
                    **conditions,
                )
            else:
                # Past the single-copy limit (5 GiB on S3): a managed multipart
                # copy, each part conditioned on the same source version.
                self.copy_client.copy(
                    copy_source,
                    self.bucket,
                    check_key(destination),
                    ExtraArgs=conditions,
                    SourceClient=origin.client,
                    Config=TransferConfig(
                        multipart_threshold=self.copy_threshold,
                        multipart_chunksize=max(self.copy_threshold, 5 * 1024**2),
                    ),
                )
        return self.head(destination)

    def delete(self, key: str, *, every_version: bool = False) -> None:
        # A bucket that never had versioning keeps one version a key: the plain delete.
        if every_version and self._versioning_status():
            self._delete_versions(key)
            return
        with self._translated(key):
            self.client.delete_object(Bucket=self.bucket, Key=check_key(key))

    def _delete_versions(self, key: str) -> None:
        """Delete every version and delete marker of `key` (not of keys it prefixes)."""
        paginator = self.client.get_paginator("list_object_versions")
        found: list[dict[str, str]] = []
        with self._translated(key):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=check_key(key)):
                for item in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())):
                    if item["Key"] == key:
                        found.append({"Key": key, "VersionId": item["VersionId"]})
            for start in range(0, len(found), _DELETE_BATCH):
                batch = found[start : start + _DELETE_BATCH]
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                errors = answer.get("Errors", ())
                if errors:
                    first = errors[0]
                    reason = f"{first.get('Code')}: {first.get('Message', '')}".strip()
                    raise StoreUnavailable(self.region, f"deleting versions of {key}: {reason}")

    def presign_get(self, key: str, *, expires_in: int) -> str:
        return self._signed(
            key, lambda checked: self._presigner.get_url(checked, expires_in=expires_in)
        )

    def presign_put(
        self,
        key: str,
        *,
        expires_in: int,
        content_type: str = OCTET_STREAM,
        content_length: int | None = None,
    ) -> str:
        return self._signed(
            key,
            lambda checked: self._presigner.put_url(
                checked,
                expires_in=expires_in,
                content_type=content_type,
                content_length=content_length,
            ),
        )

    def _signed(self, key: str, sign: Callable[[str], str]) -> str:
        """`sign(key)` once `key` is checked, errors translated as :meth:`_translated` does,
        without its cost (2 µs of the 8 a URL takes) unless there is one to translate."""
        try:
            return sign(check_key(key))
        except Exception:
            # Signing is local: a store that is down is no matter (is_call=False).
            with self._translated(key, is_call=False):
                raise

    def check(self) -> None:
        try:
            with self._translated(""):
                self.client.head_bucket(Bucket=self.bucket)
        except ObjectNotFound:  # a HEAD's 404 has no body to name the bucket in
            raise StoreUnavailable(self.region, f"no bucket {self.endpoint}") from None

    @contextlib.contextmanager
    def _translated(self, key: str, *, is_call: bool = True) -> Iterator[None]:
        if is_call and self._pause and self._clock() < self._unreachable_until:
            raise StoreUnavailable(self.region, f"{self.endpoint} was unreachable moments ago")
        try:
            yield
        except StoreError:
            raise
        except botocore.exceptions.ClientError as exc:
            raise translate_client_error(exc, self.region, key) from exc
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            if is_call:
                self._unreachable_until = self._clock() + self._pause
            # Operators need to know which endpoint; callers never see this text.
            reason = f"{type(exc).__name__} talking to {self.endpoint}"
            raise StoreUnavailable(self.region, reason) from exc


def translate_client_error(
    exc: botocore.exceptions.ClientError, region: str, key: str
) -> StoreError:
    """The store error for a botocore ClientError."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket"):
        return ObjectNotFound(region, key)
    if code in _PRECONDITION_CODES or status == 412:
        return PreconditionFailed(region, key)
    return StoreUnavailable(region, f"{code or status}: {error.get('Message', '')}".strip())


class _Translating:
    """A streaming body whose read errors are store errors."""

    def __init__(self, body: Any, store: S3Store, key: str) -> None:
        self._body = body
        self._store = store
        self._key = key

    def read(self, size: int = -1) -> bytes:
        with self._store._translated(self._key):
            return self._body.read(size if size >= 0 else None)

    def close(self) -> None:
        self._body.close()


def _head_conditions(if_match: str | None) -> dict[str, str]:
    return {"IfMatch": if_match} if if_match is not None else {}


def _version(answer: Mapping[str, Any]) -> str | None:
    """The version an answer names: None for "null", the one version of a bucket whose
    versioning is suspended (or never enabled), which the next write replaces."""
    version = answer.get("VersionId")
    return None if version in (None, "", "null") else str(version)


def _client_error_code(exc: BaseException | None) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""
