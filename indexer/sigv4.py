"""Presigned S3 URLs (AWS Signature Version 4 in the query string), signed here rather than by
botocore: ``generate_presigned_url`` costs about 150 µs a URL, :class:`QuerySigner` a few.

Written from the specification,
https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html, and equal to
botocore's URLs byte for byte for the configurations :func:`bucket_address` accepts
(tests/indexer/test_sigv4.py compares them over many keys, regions, expiries and endpoints).
:class:`Presigner` is what a store uses: it signs here only once it has seen, for its client
and each kind of URL, that the two agree, and asks botocore otherwise.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import botocore.client

logger = logging.getLogger(__name__)

ALGORITHM = "AWS4-HMAC-SHA256"
# The spec: a presigned URL does not know its payload, so it signs this constant instead.
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
# RFC 3986 unreserved characters, the only ones the spec leaves unencoded in query values.
_UNRESERVED = "-_.~"
# Credentials are read again from their provider this often: botocore refreshes temporary
# credentials 10 to 15 minutes before they expire, so what is read lives minutes longer.
CREDENTIALS_REREAD_SECONDS = 60.0
_SIGNING_KEYS_KEPT = 8
# A bucket name the settings accept (indexer.config) ...
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# ... and one that is a single DNS label, which botocore addresses virtually on AWS.
_VIRTUAL_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
# An endpoint's own path, which path-style URLs keep before the bucket.
_ENDPOINT_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)*/?")
_AWS_HOST = re.compile(r"s3(\.[a-z0-9-]+)?\.amazonaws\.com")


class Unsupported(Exception):
    """A client configuration or request that :class:`QuerySigner` does not sign as botocore."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """One frozen set of AWS credentials."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class BucketAddress:
    """Where a bucket's objects are: at ``<url_prefix>/<key>``, signed as the path
    ``<path_prefix>/<key>`` on the Host ``host`` (no default port, as HTTP clients send it)."""

    url_prefix: str
    path_prefix: str
    host: str


def quote_key(key: str) -> str:
    """`key` as an S3 URL path carries it: UTF-8, percent-encoded but for the unreserved
    characters and ``/`` (S3 does not normalize paths: ``//``, ``.`` stay as they are)."""
    return quote(key, safe="/~")


def bucket_address(client: Any, bucket: str) -> BucketAddress:
    """Where botocore addresses `bucket` through `client`, for the configurations signed here:
    an endpoint with path-style addressing (how ``make_client`` sets up an S3-compatible store),
    and AWS itself with ``auto`` addressing. :class:`Unsupported` for anything else.

    On AWS, presigned URLs of a bucket that is one DNS label go to the global endpoint,
    ``https://<bucket>.s3.amazonaws.com``, whatever the region (botocore's
    ``customize_endpoint_resolver_builtins``); other buckets (with dots) are path-style on
    the client's regional endpoint.
    """
    if not isinstance(client, botocore.client.BaseClient):
        raise Unsupported("not a botocore client")
    config = client.meta.config
    s3 = config.s3 or {}
    if config.signature_version != "s3v4":
        raise Unsupported(f"signature version {config.signature_version}")
    for option in ("use_accelerate_endpoint", "use_dualstack_endpoint", "use_fips_endpoint"):
        if s3.get(option) or getattr(config, option, None):
            raise Unsupported(option)
    if not _BUCKET.fullmatch(bucket) or bucket.endswith("--x-s3"):
        raise Unsupported(f"bucket name {bucket!r}")
    endpoint = client.meta.endpoint_url
    parts = urlsplit(endpoint)
    if (
        parts.scheme not in ("http", "https")
        or not _ENDPOINT_PATH.fullmatch(parts.path)
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise Unsupported(f"endpoint {parts.scheme}://{parts.hostname}{parts.path}")
    style = s3.get("addressing_style") or "auto"
    if style == "path":
        path = f"{parts.path.rstrip('/')}/{bucket}"
        return BucketAddress(f"{parts.scheme}://{parts.netloc}{path}", path, host_header(endpoint))
    is_aws = client.meta.partition == "aws" and _AWS_HOST.fullmatch(parts.hostname or "")
    if style != "auto" or not is_aws or parts.scheme != "https" or parts.path:
        raise Unsupported(f"{style} addressing on {parts.hostname}")
    if s3.get("us_east_1_regional_endpoint") == "regional":
        raise Unsupported("us_east_1_regional_endpoint")
    if _VIRTUAL_BUCKET.fullmatch(bucket):
        host = f"{bucket}.s3.amazonaws.com"
        return BucketAddress(f"https://{host}", "", host)
    return BucketAddress(f"{endpoint}/{bucket}", f"/{bucket}", host_header(endpoint))


def host_header(url: str) -> str:
    """The Host header a client sends to `url`: the host in lower case, with its port
    unless it is the scheme's default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class QuerySigner:
    """Signs URLs of one bucket in one region with SigV4 query parameters, S3's way: the
    path as it is (not normalized), the payload ``UNSIGNED-PAYLOAD``.

    What does not depend on the key, the credentials or the time is computed once; the
    signing key once per (date, secret) — this signer's region is fixed — and the
    timestamp once per second.
    """

    def __init__(self, address: BucketAddress, region: str, *, service: str = "s3") -> None:
        self.address = address
        self.region = region
        self._service = service
        scope_tail = f"/{region}/{service}/aws4_request"
        self._scope_tail = scope_tail
        self._encoded_scope_tail = quote(scope_tail, safe=_UNRESERVED)
        self._keys: dict[tuple[str, str], bytes] = {}
        self._stamp: tuple[int, str, str] = (-1, "", "")
        self._encoded: tuple[Credentials | None, str, str] = (None, "", "")

    def url(
        self,
        method: str,
        key: str,
        *,
        credentials: Credentials,
        expires_in: int,
        now: float,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """The URL allowing `method` on `key` for `expires_in` seconds from `now` (seconds
        since the epoch), to requests sending `headers` (lower-case names) as given."""
        second = int(now)
        stamp = self._stamp
        if stamp[0] != second:
            amz_date = time.strftime(_TIMESTAMP, time.gmtime(second))
            stamp = self._stamp = (second, amz_date, amz_date[:8])
        _, amz_date, date = stamp
        encoded = self._encoded
        if encoded[0] is not credentials:
            encoded = self._encoded = _encode_credentials(credentials)
        _, access_key, token_param = encoded
        if headers:
            names = sorted((*headers, "host"))
            values = {**headers, "host": self.address.host}
            canonical_headers = "".join(f"{name}:{_trim(values[name])}\n" for name in names)
            signed_headers = ";".join(names)
        else:
            canonical_headers = f"host:{self.address.host}\n"
            signed_headers = "host"
        path = quote_key(key)
        query = (
            f"X-Amz-Algorithm={ALGORITHM}"
            f"&X-Amz-Credential={access_key}%2F{date}{self._encoded_scope_tail}"
            f"&X-Amz-Date={amz_date}&X-Amz-Expires={expires_in}"
        )
        encoded_signed_headers = signed_headers.replace(";", "%3B")
        # The canonical query is sorted by name: the token sorts before SignedHeaders, while
        # botocore's URL puts it after them.
        canonical_request = (
            f"{method}\n{self.address.path_prefix}/{path}\n"
            f"{query}{token_param}&X-Amz-SignedHeaders={encoded_signed_headers}\n"
            f"{canonical_headers}\n{signed_headers}\n{UNSIGNED_PAYLOAD}"
        )
        string_to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{date}{self._scope_tail}\n"
            f"{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        )
        signature = hmac.digest(
            self._signing_key(date, credentials.secret_key), string_to_sign.encode(), "sha256"
        ).hex()
        return (
            f"{self.address.url_prefix}/{path}?{query}"
            f"&X-Amz-SignedHeaders={encoded_signed_headers}{token_param}"
            f"&X-Amz-Signature={signature}"
        )

    def _signing_key(self, date: str, secret: str) -> bytes:
        found = self._keys.get((date, secret))
        if found is None:
            found = _hmac(f"AWS4{secret}".encode(), date)
            for part in (self.region, self._service, "aws4_request"):
                found = _hmac(found, part)
            if len(self._keys) >= _SIGNING_KEYS_KEPT:
                self._keys.clear()
            self._keys[(date, secret)] = found
        return found


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode(), "sha256")


def _trim(value: str) -> str:
    # The spec's Trimall: no surrounding spaces, inner runs of spaces as one.
    return " ".join(value.split())


def _encode_credentials(credentials: Credentials) -> tuple[Credentials, str, str]:
    token = credentials.token
    token_param = "" if token is None else f"&X-Amz-Security-Token={quote(token, _UNRESERVED)}"
    return credentials, quote(credentials.access_key, _UNRESERVED), token_param


class Presigner:
    """The presigned URLs of one bucket through one boto3 client.

    Signed by a :class:`QuerySigner` once one URL of each kind (GET; PUT with its signed
    headers) has been seen to be the one botocore makes for this client; by botocore for
    the first URL of each kind, and for good when they differ or :func:`bucket_address`
    does not know the client's configuration. Botocore thus decides every URL's shape.

    Credentials are the client's own (the provider botocore signs with), frozen and read
    again every :data:`CREDENTIALS_REREAD_SECONDS`: a refreshing provider (an IAM role's)
    renews them then, as it would for botocore, at the cost of one read a minute.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._clock = clock
        self._monotonic = monotonic
        self._verdicts: dict[tuple[str, ...], bool] = {}
        self._credentials: Credentials | None = None
        self._reread_at = 0.0
        try:
            self._provider = client_credentials(client)
            self.signer: QuerySigner | None = QuerySigner(
                bucket_address(client, bucket), client.meta.region_name
            )
        except Unsupported as exc:
            logger.info("presigning %s with botocore: %s", bucket, exc)
            self.signer = None

    @property
    def verified(self) -> frozenset[tuple[str, ...]]:
        """The kinds of URL signed here: ``("GET",)``, ``("PUT", "content-type")``, …"""
        return frozenset(kind for kind, verdict in self._verdicts.items() if verdict)

    def get_url(self, key: str, *, expires_in: int) -> str:
        """A URL anyone may GET `key` from for `expires_in` seconds."""
        return self._url("GET", key, expires_in, {})

    def put_url(
        self, key: str, *, expires_in: int, content_type: str, content_length: int | None = None
    ) -> str:
        """A URL one may PUT `key` to, with that Content-Type (and Content-Length)."""
        headers = {"content-type": content_type}
        if content_length is not None:
            headers["content-length"] = str(content_length)
        return self._url("PUT", key, expires_in, headers)

    def _url(self, method: str, key: str, expires_in: int, headers: dict[str, str]) -> str:
        kind = (method, *headers)
        verdict = self._verdicts.get(kind)
        if verdict and self.signer is not None and type(expires_in) is int:
            try:
                return self.signer.url(
                    method,
                    key,
                    credentials=self.credentials(),
                    expires_in=expires_in,
                    now=self._clock(),
                    headers=headers,
                )
            except UnicodeError:  # text UTF-8 cannot carry: botocore says what it says of it
                pass
        url = self._botocore_url(method, key, expires_in, headers)
        if verdict is None and self.signer is not None:
            checked = self._check(url, method, key, expires_in, headers)
            if checked is not None:
                self._verdicts[kind] = checked
        return url

    def credentials(self) -> Credentials:
        """The client's credentials, read again when they are a minute old."""
        now = self._monotonic()
        if self._credentials is None or now >= self._reread_at:
            frozen = self._provider.get_frozen_credentials()
            self._credentials = Credentials(frozen.access_key, frozen.secret_key, frozen.token)
            self._reread_at = now + CREDENTIALS_REREAD_SECONDS
        return self._credentials

    def _botocore_url(self, method: str, key: str, expires_in: int, headers: dict[str, str]) -> str:
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if method == "GET":
            operation = "get_object"
        else:
            operation = "put_object"
            params["ContentType"] = headers["content-type"]
            if "content-length" in headers:
                params["ContentLength"] = int(headers["content-length"])
        return str(
            self._client.generate_presigned_url(operation, Params=params, ExpiresIn=expires_in)
        )

    def _check(
        self, url: str, method: str, key: str, expires_in: int, headers: dict[str, str]
    ) -> bool | None:
        """Whether this signer makes `url`, botocore's, at its instant: None when it cannot
        tell (the credentials changed between botocore's read and this one)."""
        assert self.signer is not None
        query = dict(parse_qsl(urlsplit(url).query))
        stamp = query.get("X-Amz-Date", "")
        credentials = self.credentials()
        try:
            now = calendar.timegm(time.strptime(stamp, _TIMESTAMP))
            ours = self.signer.url(
                method,
                key,
                credentials=credentials,
                expires_in=expires_in,
                now=now,
                headers=headers,
            )
        except (ValueError, UnicodeError):
            ours = ""
        if ours == url:
            return True
        if not query.get("X-Amz-Credential", "").startswith(f"{credentials.access_key}/"):
            self._credentials = None
            return None
        logger.warning(
            "presigning %s %s URLs of %s with botocore: its URLs are not ours (%s, not %s)",
            method,
            "/".join(headers) or "plain",
            self._bucket,
            url.split("?")[0].removesuffix(quote_key(key)),
            f"{self.signer.address.url_prefix}/",
        )
        return False


def client_credentials(client: Any) -> Any:
    """The credentials provider `client` signs with (botocore keeps it in its request
    signer and freezes it for each request): :class:`Unsupported` when it has none."""
    provider = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if provider is None or not hasattr(provider, "get_frozen_credentials"):
        raise Unsupported("no credentials")
    return provider
