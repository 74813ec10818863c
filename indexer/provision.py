"""``tooltool-indexer init``: check (and with `create`, make) what a deployment needs.

Every region's bucket exists, with public access blocked (nothing in it is meant to be
read but through a signed URL); versioning is reported (it makes a verification one
copy instead of two) with the lifecycle rule a versioned bucket needs; every region is
writable with these credentials (the indexer's); the index region's lease
(``locks/``), audit log (``audit/``) and last pass (``status/``) are readable.

One :class:`Finding` a line. A service that does not implement the public access
block (SeaweedFS, MinIO) is a warning, not a problem: such a service serves nothing
anonymously unless told to, and there is nothing to set.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from indexer.audit import HEAD_KEY, AuditLog
from indexer.last_pass import read_last_pass
from indexer.lease import LEASE_KEY, lease_expires
from indexer.local_store import LocalStore
from indexer.s3_store import S3Store
from indexer.stores import Regions, Store, StoreError

OK = "ok"
MADE = "made"
WARNING = "warning"
PROBLEM = "problem"
PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)
_MISSING_BUCKET = frozenset({"404", "NoSuchBucket", "NotFound"})
_UNSUPPORTED = frozenset({"NotImplemented", "MethodNotAllowed", "501"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of what ``init`` found: a level (ok, made, warning, problem), the region
    and what."""

    level: str
    region: str
    text: str

    def __str__(self) -> str:
        return f"{self.level}: {self.region}: {self.text}"


class _BucketError(Exception):
    """An S3 call of the checks failed: its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


def inspect(regions: Regions, *, create: bool = False) -> list[Finding]:
    """What the deployment of `regions` has and lacks; with `create`, what was missing is
    made first (buckets, their public access block)."""
    findings: list[Finding] = []
    for store in regions:
        usable = True
        if isinstance(store, S3Store):
            bucket = list(_bucket(store, create=create))
            findings += bucket
            usable = not any(finding.level == PROBLEM for finding in bucket)
        elif isinstance(store, LocalStore):
            findings.append(_directory(store))
        if usable:
            findings.append(_writable(store))
    index = regions.index
    if not any(f.level == PROBLEM and f.region == index.region for f in findings):
        findings += _index_region(index)
    return findings


def _bucket(store: S3Store, *, create: bool) -> Iterator[Finding]:
    found = _finder(store.region)
    bucket = store.bucket
    try:
        exists = _call(lambda: store.client.head_bucket(Bucket=bucket), missing=True) is not None
        if not exists and not create:
            yield found(PROBLEM, f"no bucket {bucket} (tooltool-indexer init --create makes it)")
            return
        if not exists:
            _call(lambda: store.client.create_bucket(Bucket=bucket, **_location(store)))
            yield found(MADE, f"made bucket {bucket}")
        else:
            yield found(OK, f"bucket {bucket} exists")
        yield _public_access(store, create=create)
        yield from _versioning(store)
    except _BucketError as exc:
        yield found(PROBLEM, f"bucket {bucket}: {exc}")


def _location(store: S3Store) -> dict[str, Any]:
    """CreateBucket's location: none for us-east-1 (AWS refuses it), else the region."""
    region = store.client.meta.region_name
    if region == "us-east-1":
        return {}
    return {"CreateBucketConfiguration": {"LocationConstraint": region}}


def _public_access(store: S3Store, *, create: bool) -> Finding:
    found = _finder(store.region)
    try:
        answer = _configuration(
            store, "get_public_access_block", "NoSuchPublicAccessBlockConfiguration"
        )
    except _BucketError as exc:
        if exc.code in _UNSUPPORTED:
            return found(
                WARNING,
                "this S3 service does not implement the public access block: keep the bucket"
                " private by its own means (anonymous reads off)",
            )
        raise
    settings = {} if answer is None else answer.get("PublicAccessBlockConfiguration", {})
    if all(settings.get(flag) for flag in PUBLIC_ACCESS_FLAGS):
        return found(OK, "public access blocked")
    if not create:
        open_flags = ", ".join(flag for flag in PUBLIC_ACCESS_FLAGS if not settings.get(flag))
        return found(
            PROBLEM,
            f"public access not blocked ({open_flags} off): tooltool-indexer init --create"
            " blocks it",
        )
    configuration = dict.fromkeys(PUBLIC_ACCESS_FLAGS, True)
    _call(
        lambda: store.client.put_public_access_block(
            Bucket=store.bucket, PublicAccessBlockConfiguration=configuration
        )
    )
    return found(MADE, "blocked public access")


def _versioning(store: S3Store) -> Iterator[Finding]:
    found = _finder(store.region)
    try:
        status = _call(lambda: store.client.get_bucket_versioning(Bucket=store.bucket))
    except _BucketError as exc:
        yield found(WARNING, f"cannot read the bucket's versioning ({exc}): taken as unversioned")
        return
    if status.get("Status") != "Enabled":
        yield found(OK, "not versioned: an upload is verified with two server-side copies")
        return
    yield found(OK, "versioned: an upload is verified with one server-side copy")
    try:
        rules = _configuration(
            store, "get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration"
        )
    except _BucketError as exc:
        yield found(WARNING, f"cannot read the bucket's lifecycle rules ({exc})")
        return
    expiring = [
        rule
        for rule in ({} if rules is None else rules).get("Rules", ())
        if rule.get("Status") == "Enabled" and "NoncurrentVersionExpiration" in rule
    ]
    if expiring:
        yield found(OK, "noncurrent versions expire")
    else:
        yield found(
            WARNING,
            "no lifecycle rule expires noncurrent versions: every rewrite of an index object"
            " keeps the old one (a day is plenty)",
        )


def _configuration(store: S3Store, operation: str, missing_code: str) -> Any:
    """One of the bucket's configurations (`operation` reads it); None when it has none."""
    read = getattr(store.client, operation)
    return _call(
        lambda: read(Bucket=store.bucket), missing=True, missing_codes=frozenset({missing_code})
    )


def _call(
    call: Callable[[], Any],
    *,
    missing: bool = False,
    missing_codes: frozenset[str] = _MISSING_BUCKET,
) -> Any:
    """`call`'s answer; with `missing`, None when it answers one of `missing_codes`.
    botocore's errors become :class:`_BucketError` here, at the edge."""
    try:
        return call()
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(
            error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        )
        if missing and code in missing_codes:
            return None
        if code in ("403", "AccessDenied"):
            raise _BucketError(code, "access denied to these credentials") from None
        raise _BucketError(code, str(error.get("Message", ""))) from None
    except (botocore.exceptions.BotoCoreError, OSError) as exc:
        raise _BucketError(type(exc).__name__, "the endpoint cannot be reached") from None


def _directory(store: LocalStore) -> Finding:
    try:
        store.check()
    except StoreError as exc:
        return Finding(PROBLEM, store.region, str(exc))
    return Finding(OK, store.region, f"local directory {store.root}")


def _writable(store: Store) -> Finding:
    """Whether these credentials may write (and delete) in the region: a probe object."""
    probe = f"locks/init-probe-{secrets.token_hex(8)}.json"
    try:
        store.put(probe, b"{}", if_none_match=True, content_type="application/json")
        store.delete(probe)
    except StoreError as exc:
        return Finding(PROBLEM, store.region, f"cannot write with these credentials: {exc}")
    return Finding(OK, store.region, "writable with these credentials")


def _index_region(store: Store) -> Iterator[Finding]:
    found = _finder(store.region)
    yield found(OK, "the index region: index objects, catalog, intake, lease and audit log")
    try:
        expires = lease_expires(store)
        head = AuditLog(store).head()
        last = read_last_pass(store)
    except StoreError as exc:
        yield found(PROBLEM, f"cannot read the lease, audit log or last pass: {exc}")
        return
    now = time.time()
    held = f"held until {_when(expires)}" if expires > now else "free"
    yield found(OK, f"lease {LEASE_KEY}: {held}")
    yield found(OK, f"audit log {HEAD_KEY}: {head} records")
    if last is None:
        yield found(
            WARNING,
            "no indexer pass has finished yet: run tooltool-indexer watch (or run from cron),"
            " or uploads are never verified",
        )
    else:
        yield found(OK, f"last indexer pass finished {_when(last.finished)}")


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _finder(region: str) -> Callable[[str, str], Finding]:
    return lambda level, text: Finding(level, region, text)
