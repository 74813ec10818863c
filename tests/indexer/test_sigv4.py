"""Presigned S3 URLs signed by indexer.sigv4: botocore's own, byte for byte, and accepted by S3.

Every comparison freezes botocore's clock (``botocore.auth.get_current_datetime``,
which its query signer reads for X-Amz-Date) at the instant given to ours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from indexer import sigv4
from indexer.s3_store import S3Store, client_config
from indexer.sigv4 import (
    Credentials,
    Presigner,
    QuerySigner,
    Unsupported,
    bucket_address,
    client_credentials,
)
from indexer.stores import OCTET_STREAM
from tests.conftest import SeaweedFS

# Endpoints as S3_ENDPOINT_URL configures them (an http one always with its port), and
# None: AWS itself.
ENDPOINTS = (
    "http://127.0.0.1:8333",
    "http://127.0.0.1:80",
    "http://seaweedfs.internal:8333",
    "http://[::1]:8333",
    "https://s3.example.com",
    "https://s3.example.com:443",
    "https://S3.Example.COM:8443",
    "https://storage.example.com/s3/",
    None,
)
REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "eu-central-1", "ap-southeast-2", "sa-east-1")
# Access key, secret, session token: plain keys, and temporary ones whose token needs encoding.
CREDENTIALS = (
    ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None),
    ("ASIAEXAMPLE7TOKEN", "s/e+c=r%e t", "IQoJb3JpZ2luX2VjE+/Xz=" * 20),
    ("tooltool-access", "ünïcödé secret", "a token ~ with spaces, é and ?&=#"),
)
# Single DNS labels (virtual-hosted on AWS) and names with dots (which cannot be).
BUCKETS = ("bucket-a", "b12", "a--b", "x" * 63, "tooltool.artifacts", "192.168.5.4", "a.-b")
# What keys are made of: every character class a URL path treats apart.
PIECES = (
    *" ~+=%/?#&;:@!$'()*,[]\\\"<>^`{|}\t\n\x7f",
    "//",
    "%2F",
    "%20",
    ".",
    "..",
    "é",
    "日本",
    "😀",
    "sha512/" + "0f" * 64,
)
INSTANT = 1767225600.25  # 2026-01-01T00:00:00.25Z

keys = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(min_size=1, max_size=12)), min_size=1, max_size=10
).map("".join)
# Past and future instants, a day boundary included.
instants = st.one_of(
    st.just(INSTANT - 0.5), st.floats(min_value=946684800, max_value=4102444799, allow_nan=False)
)


@dataclass(frozen=True)
class Case:
    """One URL to sign both ways."""

    endpoint: str | None
    region: str
    credentials: int
    bucket: str
    key: str
    expires_in: int
    now: float
    method: str
    content_type: str = OCTET_STREAM
    content_length: int | None = None


cases = st.builds(
    Case,
    endpoint=st.sampled_from(ENDPOINTS),
    region=st.sampled_from(REGIONS),
    credentials=st.integers(0, len(CREDENTIALS) - 1),
    bucket=st.one_of(
        st.sampled_from(BUCKETS), st.from_regex(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", fullmatch=True)
    ),
    key=keys,
    expires_in=st.one_of(st.sampled_from([1, 60, 3600, 604800]), st.integers(1, 604800)),
    now=instants,
    method=st.sampled_from(["GET", "PUT"]),
    content_type=st.sampled_from(
        [OCTET_STREAM, "application/x-tar;  charset=binary", " text/plain "]
    ),
    content_length=st.one_of(st.none(), st.integers(0, 5 * 1024**4)),
)


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()  # one loader of botocore's models for every client


@functools.cache
def client_for(endpoint: str | None, region: str, credentials: int, **s3: Any) -> Any:
    """A client configured as make_client configures one, with these credentials."""
    access_key, secret_key, token = CREDENTIALS[credentials]
    config = client_config(endpoint)
    if s3:
        config = config.merge(Config(s3=s3))
    return _session().client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=token,
        config=config,
    )


@contextlib.contextmanager
def botocore_at(now: float) -> Iterator[None]:
    """botocore's signers read the time as ``now``."""
    instant = datetime.datetime.fromtimestamp(int(now), datetime.UTC).replace(tzinfo=None)
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *args, **kwargs: instant
    try:
        yield
    finally:
        botocore.auth.get_current_datetime = original


def botocore_url(client: Any, case: Case) -> str:
    params: dict[str, Any] = {"Bucket": case.bucket, "Key": case.key}
    operation = "get_object"
    if case.method == "PUT":
        operation = "put_object"
        params["ContentType"] = case.content_type
        if case.content_length is not None:
            params["ContentLength"] = case.content_length
    with botocore_at(case.now):
        return str(
            client.generate_presigned_url(operation, Params=params, ExpiresIn=case.expires_in)
        )


def our_url(client: Any, case: Case) -> str:
    """The URL of QuerySigner itself: no comparison with botocore, no falling back to it."""
    frozen = client_credentials(client).get_frozen_credentials()
    signer = QuerySigner(bucket_address(client, case.bucket), case.region)
    headers = {}
    if case.method == "PUT":
        headers["content-type"] = case.content_type
        if case.content_length is not None:
            headers["content-length"] = str(case.content_length)
    return signer.url(
        case.method,
        case.key,
        credentials=Credentials(frozen.access_key, frozen.secret_key, frozen.token),
        expires_in=case.expires_in,
        now=case.now,
        headers=headers,
    )


def assert_same_url(case: Case) -> None:
    client = client_for(case.endpoint, case.region, case.credentials)
    assert our_url(client, case) == botocore_url(client, case)


@settings(max_examples=400, deadline=None, database=None)
@given(case=cases)
def test_urls_are_botocores_byte_for_byte(case: Case) -> None:
    assert_same_url(case)


@pytest.mark.parametrize(
    ("name", "mistake"),
    [
        ("quote_key", lambda key: quote(key, safe="/~+")),  # a '+' left as it is
        ("quote_key", lambda key: quote(key, safe="/").replace("%7E", "~").replace("%20", "+")),
        ("quote_key", lambda key: quote(key.encode("latin-1", "replace"), safe="/~")),
        ("host_header", lambda url: sigv4.urlsplit(url).netloc.lower()),  # the default port kept
        ("_trim", lambda value: value),
    ],
    ids=["plus", "space-as-plus", "not-utf8", "default-port", "untrimmed"],
)
def test_the_comparison_catches_a_mistake(
    monkeypatch: pytest.MonkeyPatch, name: str, mistake: Callable[[str], str]
) -> None:
    """The byte comparison is no tautology: each of these mistakes makes it fail."""
    monkeypatch.setattr(sigv4, name, mistake)
    search = settings(max_examples=400, deadline=None, database=None, phases=[Phase.generate])
    with pytest.raises(AssertionError):
        search(given(case=cases)(assert_same_url))()


@pytest.mark.parametrize(
    ("endpoint", "s3", "bucket"),
    [
        ("https://s3.example.com", {"addressing_style": "virtual"}, "bucket-a"),
        (None, {"use_accelerate_endpoint": True}, "bucket-a"),
        (None, {"use_dualstack_endpoint": True}, "bucket-a"),
        (None, {"addressing_style": "virtual"}, "bucket-a"),
        (None, {"us_east_1_regional_endpoint": "regional"}, "bucket-a"),
        ("http://127.0.0.1:8333", {}, "Upper_Case"),
        (None, {}, "Upper_Case"),
    ],
    ids=[
        "virtual-endpoint",
        "accelerate",
        "dualstack",
        "virtual-aws",
        "regional",
        "odd",
        "odd-aws",
    ],
)
def test_other_configurations_are_botocores(
    endpoint: str | None, s3: dict[str, Any], bucket: str
) -> None:
    client = client_for(endpoint, "us-east-1", 1, **s3)
    with pytest.raises(Unsupported):
        bucket_address(client, bucket)
    presigner = Presigner(client, bucket, clock=lambda: INSTANT)
    assert presigner.signer is None
    case = Case(endpoint, "us-east-1", 1, bucket, "sha512/a b", 60, INSTANT, "GET")
    with botocore_at(INSTANT):
        assert presigner.get_url(case.key, expires_in=60) == botocore_url(client, case)


def count_botocore_calls(monkeypatch: pytest.MonkeyPatch, client: Any) -> list[str]:
    """The URLs botocore presigns through `client` from now on."""
    calls: list[str] = []
    original = client.generate_presigned_url

    def counted(*args: Any, **kwargs: Any) -> str:
        calls.append(original(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(client, "generate_presigned_url", counted)
    return calls


def test_botocore_signs_the_first_url_of_each_kind_then_this_signer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = client_for("http://127.0.0.1:8333", "us-east-1", 1)
    calls = count_botocore_calls(monkeypatch, client)
    presigner = Presigner(client, "bucket-a", clock=lambda: INSTANT)
    case = Case("http://127.0.0.1:8333", "us-east-1", 1, "bucket-a", "sha512/x", 60, INSTANT, "GET")
    with botocore_at(INSTANT):
        for number in range(3):
            expected = botocore_url(client, dataclasses.replace(case, key=f"sha512/{number}"))
            assert presigner.get_url(f"sha512/{number}", expires_in=60) == expected
        assert len(calls) == 1 + 3  # the presigner's first, and this test's three
        for key, length in [("a", None), ("b", None), ("c", 1), ("d", 2)]:
            url = presigner.put_url(
                f"staging/{key}", expires_in=60, content_type=OCTET_STREAM, content_length=length
            )
            put = dataclasses.replace(
                case, key=f"staging/{key}", method="PUT", content_length=length
            )
            assert url == botocore_url(client, put)
    assert len(calls) == 4 + 2 + 4


def test_a_signer_that_disagrees_with_botocore_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for("http://127.0.0.1:8333", "us-east-1", 0)
    calls = count_botocore_calls(monkeypatch, client)
    presigner = Presigner(client, "bucket-a", clock=lambda: INSTANT)
    assert presigner.signer is not None
    monkeypatch.setattr(presigner.signer, "address", sigv4.BucketAddress("http://x", "", "x"))
    with botocore_at(INSTANT):
        urls = [presigner.get_url("sha512/x", expires_in=60) for _ in range(3)]
    assert urls == calls
    assert all(url.startswith("http://127.0.0.1:8333/bucket-a/sha512/x?") for url in urls)
    assert "presigning GET plain URLs of bucket-a with botocore" in caplog.text
    assert "X-Amz-Signature" not in caplog.text


def test_credentials_changed_during_the_check_leave_it_for_the_next_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = client_for("http://127.0.0.1:8333", "us-east-1", 0)
    calls = count_botocore_calls(monkeypatch, client)
    presigner = Presigner(client, "bucket-a", clock=lambda: INSTANT)
    own = presigner._provider
    presigner._provider = RefreshableCredentials.create_from_metadata(
        {
            "access_key": "ASIANEWER",
            "secret_key": "newer",
            "token": "t",
            "expiry_time": "2999-01-01T00:00:00+00:00",
        },
        lambda: {},
        "test",
    )
    presigner.get_url("sha512/x", expires_in=60)
    assert presigner.verified == frozenset()
    presigner._provider = own
    presigner.get_url("sha512/y", expires_in=60)
    assert presigner.verified == {("GET",)}
    presigner.get_url("sha512/z", expires_in=60)
    assert len(calls) == 2


def test_credentials_are_read_again_every_minute() -> None:
    """An IAM role's credentials expire: the provider refreshes them when read."""
    issued: list[str] = []

    def refresh() -> dict[str, str]:
        issued.append(f"ASIAROLE{len(issued)}")
        soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        return {
            "access_key": issued[-1],
            "secret_key": "role-secret",
            "token": "role-token",
            "expiry_time": soon.isoformat(),
        }

    provider = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    client = client_for("http://127.0.0.1:8333", "us-east-1", 0)
    now = [1000.0]
    presigner = Presigner(client, "bucket-a", monotonic=lambda: now[0])
    presigner._provider = provider  # the role's credentials
    first = presigner.credentials()
    for _ in range(100):
        assert presigner.credentials() is first  # no read within the minute
    now[0] += 61
    renewed = presigner.credentials()
    assert renewed.access_key != first.access_key
    assert renewed.access_key == issued[-1]


@pytest.fixture
def bucket_signer(seaweedfs: SeaweedFS) -> tuple[S3Store, QuerySigner, Credentials]:
    store = S3Store(seaweedfs.client(), seaweedfs.new_bucket(), region="us-east-1")
    frozen = client_credentials(store.client).get_frozen_credentials()
    signer = QuerySigner(bucket_address(store.client, store.bucket), "us-east-1")
    return store, signer, Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def later_date(match: re.Match[str]) -> str:
    """X-Amz-Date an hour later: the URL would live an hour longer."""
    stamp = datetime.datetime.strptime(match.group(), "X-Amz-Date=%Y%m%dT%H%M%SZ")
    return (stamp + datetime.timedelta(hours=1)).strftime("X-Amz-Date=%Y%m%dT%H%M%SZ")


def status_of(url: str, *, method: str = "GET", data: bytes | None = None, **headers: str) -> int:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_seaweedfs_accepts_our_urls_until_they_expire(
    bucket_signer: tuple[S3Store, QuerySigner, Credentials],
) -> None:
    store, signer, credentials = bucket_signer
    store.put("sha512/held", b"the bytes")
    now = time.time()
    url = signer.url("GET", "sha512/held", credentials=credentials, expires_in=60, now=now)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"the bytes"
    expired = signer.url("GET", "sha512/held", credentials=credentials, expires_in=60, now=now - 61)
    assert status_of(expired) == 403
    put = signer.url(
        "PUT",
        "staging/sized",
        credentials=credentials,
        expires_in=60,
        now=now,
        headers={"content-type": OCTET_STREAM, "content-length": "5"},
    )
    assert status_of(put, method="PUT", data=b"12345", **{"Content-Type": OCTET_STREAM}) == 200
    assert store.get("staging/sized")[0] == b"12345"


@pytest.mark.parametrize(
    "tampered",
    [
        lambda url: url[:-1] + ("0" if url[-1] != "0" else "1"),  # the signature
        lambda url: url.replace("sha512/held", "sha512/other"),
        lambda url: url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"),
        lambda url: re.sub(r"X-Amz-Date=\d{8}T\d{6}Z", later_date, url),
    ],
    ids=["signature", "key", "expires", "date"],
)
def test_seaweedfs_refuses_our_urls_tampered(
    bucket_signer: tuple[S3Store, QuerySigner, Credentials], tampered: Callable[[str], str]
) -> None:
    store, signer, credentials = bucket_signer
    store.put("sha512/held", b"the bytes")
    store.put("sha512/other", b"other bytes")
    url = signer.url("GET", "sha512/held", credentials=credentials, expires_in=60, now=time.time())
    assert status_of(url) == 200
    changed = tampered(url)
    assert changed != url
    assert status_of(changed) == 403
