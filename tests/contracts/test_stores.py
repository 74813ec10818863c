"""The store contract: every backend behaves the same, presigned URLs included.

One abstract class, subclassed per store (as giftless does): a behaviour
added here is tested against the local directory and a real SeaweedFS.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from gateway.app import create_app
from indexer.digests import hash_stream
from indexer.stores import (
    InvalidKey,
    ObjectNotFound,
    PreconditionFailed,
    Regions,
    Store,
    StoreError,
)
from tests.conftest import LiveServer, SeaweedFS, free_port, make_local_store, settings_for


def fetch(url: str, *, method: str = "GET", data: bytes | None = None, **headers: str) -> bytes:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return response.read()


def refused_status(url: str, *, method: str = "GET", data: bytes | None = None, **headers: str):
    with pytest.raises(urllib.error.HTTPError) as caught:
        fetch(url, method=method, data=data, **headers)
    caught.value.close()
    return caught.value.code


def tamper(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query[name] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


class StoreContract:
    """What every store must do. Subclasses provide the `store` fixture."""

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError

    def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)

    def test_put_get_head(self, store: Store) -> None:
        info = store.put("dir/object", b"hello world")
        data, got = store.get("dir/object")
        assert data == b"hello world"
        assert got.size == 11
        assert got.etag == info.etag
        assert store.head("dir/object") == got

    def test_missing_objects(self, store: Store) -> None:
        with pytest.raises(ObjectNotFound):
            store.get("missing/object")
        with pytest.raises(ObjectNotFound):
            store.head("missing/object")
        with pytest.raises(ObjectNotFound), store.open("missing/object"):
            pass

    def test_overwrite_changes_etag(self, store: Store) -> None:
        first = store.put("key", b"one")
        second = store.put("key", b"two")
        assert first.etag != second.etag
        assert store.get("key")[0] == b"two"

    def test_create_only_when_absent(self, store: Store) -> None:
        store.put("created", b"first", if_none_match=True)
        with pytest.raises(PreconditionFailed):
            store.put("created", b"second", if_none_match=True)
        assert store.get("created")[0] == b"first"

    def test_replace_only_the_version_read(self, store: Store) -> None:
        info = store.put("versioned", b"v1")
        updated = store.put("versioned", b"v2", if_match=info.etag)
        with pytest.raises(PreconditionFailed):
            store.put("versioned", b"v3", if_match=info.etag)
        with pytest.raises(PreconditionFailed):
            store.put("absent", b"v1", if_match=updated.etag)
        assert store.get("versioned")[0] == b"v2"

    def test_stream_large_object(self, store: Store, tmp_path: Path) -> None:
        payload = os.urandom(9 * 1024 * 1024 + 17)  # over boto3's multipart threshold
        store.put_stream("big/object", io.BytesIO(payload))
        assert store.head("big/object").size == len(payload)
        with store.open("big/object") as stream:
            hashed = hash_stream(stream)
        assert hashed.digest == hashlib.sha512(payload).hexdigest()
        assert hashed.size == len(payload)

    def test_list_by_prefix(self, store: Store) -> None:
        for key in ("index/a/1", "index/a/2", "index/b/3", "indexed", "other/4"):
            store.put(key, key.encode())
        listed = {info.key: info.size for info in store.list("index/")}
        assert listed == {"index/a/1": 9, "index/a/2": 9, "index/b/3": 9}
        assert {info.key for info in store.list("index/a/")} == {"index/a/1", "index/a/2"}
        assert list(store.list("nothing/")) == []

    def test_delete(self, store: Store) -> None:
        store.put("doomed", b"x")
        store.delete("doomed")
        with pytest.raises(ObjectNotFound):
            store.head("doomed")
        store.delete("doomed")  # deleting an absent object is fine

    def test_copy(self, store: Store) -> None:
        source = store.put("staging/source", b"payload")
        copied = store.copy("staging/source", "final/target", if_match=source.etag)
        assert copied.size == 7
        assert store.get("final/target")[0] == b"payload"
        assert store.get("staging/source")[0] == b"payload"

    def test_copy_conditioned_on_source_etag(self, store: Store) -> None:
        stale = store.put("staging/changing", b"verified bytes")
        store.put("staging/changing", b"replaced bytes")
        with pytest.raises(PreconditionFailed):
            store.copy("staging/changing", "final/changing", if_match=stale.etag)
        with pytest.raises(ObjectNotFound):
            store.head("final/changing")
        with pytest.raises(ObjectNotFound):
            store.copy("staging/absent", "final/absent")

    def test_copy_from_another_region(self, store: Store, other_region: Store) -> None:
        source = other_region.put("sha512/replicated", b"replicated bytes")
        copied = store.copy_from(other_region, "sha512/replicated", if_match=source.etag)
        assert store.get("sha512/replicated")[0] == b"replicated bytes"
        assert copied == store.head("sha512/replicated")
        assert copied.size == 16
        assert other_region.get("sha512/replicated")[0] == b"replicated bytes"
        store.put("sha512/replicated", b"damaged")  # one region's copy is its own
        assert other_region.get("sha512/replicated")[0] == b"replicated bytes"

    def test_copy_from_conditioned_on_source_etag(self, store: Store, other_region: Store) -> None:
        stale = other_region.put("sha512/changing", b"verified bytes")
        other_region.put("sha512/changing", b"replaced bytes")
        with pytest.raises(PreconditionFailed):
            store.copy_from(other_region, "sha512/changing", if_match=stale.etag)
        with pytest.raises(ObjectNotFound):
            store.head("sha512/changing")
        with pytest.raises(ObjectNotFound):
            store.copy_from(other_region, "sha512/absent")

    def test_listings_name_versions_as_head_and_copies_do(
        self, store: Store, other_region: Store
    ) -> None:
        """The consistency check compares listed ETags with the ones copies returned."""
        big = os.urandom(17 * 1024 * 1024)  # past the local store's content-named size
        other_region.put_stream("sha512/big", io.BytesIO(big))
        copies = {
            "sha512/small": store.put("sha512/small", b"small"),
            "sha512/big": store.copy_from(other_region, "sha512/big"),
        }
        listed = {info.key: info for info in store.list("sha512/")}
        assert listed == copies
        assert {key: store.head(key) for key in copies} == copies

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "/absolute",
            "a//b",
            "../escape",
            "a/../b",
            ".hidden",
            "a/.tmp/b",
            "sp ace",
            "a" * 256,
        ],
    )
    def test_invalid_keys(self, store: Store, key: str) -> None:
        with pytest.raises(InvalidKey):
            store.put(key, b"x")
        with pytest.raises(InvalidKey):
            store.get(key)
        with pytest.raises(InvalidKey):
            store.presign_get(key, expires_in=60)

    def test_presigned_get(self, store: Store) -> None:
        store.put("sha512/abc", b"the exact bytes")
        url = store.presign_get("sha512/abc", expires_in=60)
        assert fetch(url) == b"the exact bytes"

    def test_presigned_put(self, store: Store) -> None:
        url = store.presign_put("staging/upload", expires_in=60)
        body = fetch(
            url,
            method="PUT",
            data=b"uploaded bytes",
            **{"Content-Type": "application/octet-stream", "Content-Length": "14"},
        )
        assert body == b""
        assert store.get("staging/upload")[0] == b"uploaded bytes"

    def test_presigned_put_with_a_signed_length(self, store: Store) -> None:
        url = store.presign_put("staging/sized", expires_in=60, content_length=5)
        headers = {"Content-Type": "application/octet-stream"}
        assert refused_status(url, method="PUT", data=b"123456", **headers) == 403
        with pytest.raises(ObjectNotFound):
            store.head("staging/sized")
        fetch(url, method="PUT", data=b"12345", **headers)
        assert store.get("staging/sized")[0] == b"12345"

    def test_open_a_version(self, store: Store) -> None:
        first = store.put("versioned/read", b"first")
        with store.open("versioned/read", if_match=first.etag) as stream:
            assert stream.read() == b"first"
        store.put("versioned/read", b"second")
        with pytest.raises(PreconditionFailed), store.open("versioned/read", if_match=first.etag):
            pass

    def test_a_version_pins_its_bytes(self, store: Store) -> None:
        """On a versioned store, the version a head names is read and copied by its id,
        whatever the key holds since."""
        if not store.is_versioned():
            pytest.skip("an unversioned store names no versions")
        put = store.put("staging/pinned", b"first bytes")
        first = store.head("staging/pinned")
        assert first.version_id is not None
        assert put.version_id == first.version_id
        store.put("staging/pinned", b"later bytes")
        assert store.head("staging/pinned").version_id not in (None, first.version_id)
        with store.open("staging/pinned", version_id=first.version_id) as stream:
            assert stream.read() == b"first bytes"
        copied = store.copy("staging/pinned", "sha512/pinned", version_id=first.version_id)
        assert store.get("sha512/pinned")[0] == b"first bytes"
        assert copied == store.head("sha512/pinned")
        assert copied.etag == first.etag

    def test_a_version_deleted_is_not_found(self, store: Store) -> None:
        if not store.is_versioned():
            pytest.skip("an unversioned store names no versions")
        store.put("staging/gone", b"first bytes")
        first = store.head("staging/gone")
        store.put("staging/gone", b"later bytes")
        store.delete("staging/gone", every_version=True)
        with pytest.raises(ObjectNotFound):
            store.head("staging/gone")
        with pytest.raises(ObjectNotFound), store.open("staging/gone", version_id=first.version_id):
            pass
        with pytest.raises(ObjectNotFound):
            store.copy("staging/gone", "sha512/gone", version_id=first.version_id)
        with pytest.raises(ObjectNotFound):
            store.head("sha512/gone")

    def test_an_unversioned_store_names_no_versions(self, store: Store) -> None:
        if store.is_versioned():
            pytest.skip("a versioned store names its versions")
        assert store.put("staging/plain", b"bytes").version_id is None
        assert store.head("staging/plain").version_id is None
        assert store.copy("staging/plain", "sha512/plain").version_id is None

    def test_delete_every_version(self, store: Store) -> None:
        for data in (b"one", b"two"):
            store.put("staging/many", data)
        store.put("staging/many-more", b"kept")
        store.delete("staging/many", every_version=True)
        with pytest.raises(ObjectNotFound):
            store.head("staging/many")
        assert [info.key for info in store.list("staging/")] == ["staging/many-more"]
        store.delete("staging/many", every_version=True)  # nothing left: no error
        store.put("staging/many", b"three")
        assert store.get("staging/many")[0] == b"three"

    def test_presigned_put_refuses_another_content_type(self, store: Store) -> None:
        url = store.presign_put("staging/typed", expires_in=60)
        status = refused_status(
            url, method="PUT", data=b"x", **{"Content-Type": "text/plain", "Content-Length": "1"}
        )
        assert status == 403
        with pytest.raises(ObjectNotFound):
            store.head("staging/typed")

    def test_presigned_urls_work_with_plain_curl(self, store: Store, tmp_path: Path) -> None:
        source = tmp_path / "payload"
        source.write_bytes(os.urandom(4096))
        put_url = store.presign_put("staging/curl", expires_in=60)
        subprocess.run(
            [
                "curl",
                "-sSf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                f"@{source}",
                put_url,
            ],
            check=True,
            timeout=30,
        )
        target = tmp_path / "fetched"
        get_url = store.presign_get("staging/curl", expires_in=60)
        subprocess.run(["curl", "-sSf", "-o", str(target), get_url], check=True, timeout=30)
        assert target.read_bytes() == source.read_bytes()

    def test_expired_url_refused(self, store: Store) -> None:
        store.put("sha512/expiring", b"soon gone")
        url = store.presign_get("sha512/expiring", expires_in=1)
        time.sleep(2.2)
        assert refused_status(url) == 403

    def test_tampered_url_refused(self, store: Store) -> None:
        store.put("sha512/one", b"one")
        store.put("sha512/two", b"two")
        url = store.presign_get("sha512/one", expires_in=60)
        query = dict(parse_qsl(urlsplit(url).query))
        signature_name = next(name for name in query if "signature" in name.lower())
        forged = "0" * len(query[signature_name])
        assert refused_status(tamper(url, signature_name, forged)) == 403
        assert refused_status(url.replace("sha512/one", "sha512/two")) == 403
        expiry_name = next(name for name in query if "expires" in name.lower())
        longer = str(int(query[expiry_name]) + 3600)
        assert refused_status(tamper(url, expiry_name, longer)) == 403
        put_url = store.presign_put("staging/x", expires_in=60)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": "1"}
        assert (
            refused_status(
                put_url.replace("staging/x", "staging/y"), method="PUT", data=b"x", **headers
            )
            == 403
        )

    def test_get_url_does_not_allow_put(self, store: Store) -> None:
        store.put("sha512/readonly", b"keep")
        url = store.presign_get("sha512/readonly", expires_in=60)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": "4"}
        assert refused_status(url, method="PUT", data=b"evil", **headers) == 403
        assert store.get("sha512/readonly")[0] == b"keep"

    def test_check(self, store: Store) -> None:
        store.check()


def set_versioning(client: Any, bucket: str, status: str) -> None:
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


class TestLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path, live_server: Callable[[Any, int], LiveServer]) -> Store:
        port = free_port()
        store = make_local_store(tmp_path / "data", public_url=f"http://127.0.0.1:{port}")
        settings = settings_for(tmp_path / "data", embedded_indexer=False)
        live_server(create_app(settings, Regions([store])), port)
        return store

    @pytest.fixture
    def other_region(self, tmp_path: Path) -> Store:
        return make_local_store(tmp_path / "west", region="west")

    def test_a_version_id_names_nothing_here(self, store: Store) -> None:
        store.put("staging/plain", b"bytes")
        with pytest.raises(ObjectNotFound), store.open("staging/plain", version_id="v1"):
            pass
        with pytest.raises(ObjectNotFound):
            store.copy("staging/plain", "sha512/plain", version_id="v1")

    def test_internal_files_are_not_listed(self, store: Store) -> None:
        store.put("a", b"x")
        assert [info.key for info in store.list("")] == ["a"]

    def test_relative_urls_without_public_url(self, tmp_path: Path) -> None:
        store = make_local_store(tmp_path / "other")
        assert store.presign_get("sha512/x", expires_in=5).startswith("/__store__/local/sha512/x?")


class TestS3Store(StoreContract):
    @pytest.fixture
    def store(self, s3_store: Store) -> Store:
        return s3_store

    @pytest.fixture
    def other_region(self, seaweedfs: SeaweedFS) -> Store:
        from indexer.s3_store import S3Store

        return S3Store(seaweedfs.client("us-west-2"), seaweedfs.new_bucket(), region="us-west-2")

    def test_suspended_versioning_pins_nothing(self, seaweedfs: SeaweedFS) -> None:
        """Versions written while versioning is suspended are "null", which the next write
        replaces: none is named, even by a store that found the bucket versioned."""
        from indexer.s3_store import S3Store

        bucket = seaweedfs.new_bucket()
        client = seaweedfs.client()
        set_versioning(client, bucket, "Enabled")
        store = S3Store(client, bucket, region="us-east-1")
        assert store.is_versioned()
        enabled = store.put("staging/x", b"while enabled")
        assert enabled.version_id is not None
        set_versioning(client, bucket, "Suspended")
        assert store.put("staging/x", b"while suspended").version_id is None
        assert store.head("staging/x").version_id is None
        assert not S3Store(client, bucket, region="us-east-1").is_versioned()
        with store.open("staging/x", version_id=enabled.version_id) as stream:
            assert stream.read() == b"while enabled"  # kept, and still pinned
        store.delete("staging/x", every_version=True)
        versions = client.list_object_versions(Bucket=bucket, Prefix="staging/x")
        assert versions.get("Versions", []) == versions.get("DeleteMarkers", []) == []

    def test_versioning_is_asked_once(self, seaweedfs: SeaweedFS) -> None:
        from indexer.s3_store import S3Store

        asked: list[str] = []
        client = seaweedfs.client()
        client.meta.events.register(
            "before-call.s3.GetBucketVersioning", lambda **_: asked.append("asked")
        )
        store = S3Store(client, seaweedfs.new_bucket(), region="us-east-1")
        for _ in range(3):
            store.is_versioned()
            store.delete("staging/x", every_version=True)
        assert asked == ["asked"]

    def test_versioning_refused_is_taken_as_unversioned(self, seaweedfs: SeaweedFS) -> None:
        """Credentials without s3:GetBucketVersioning: the safe, slower way, not an outage."""
        from botocore.stub import Stubber

        from indexer.s3_store import S3Store

        client = seaweedfs.client()
        store = S3Store(client, seaweedfs.new_bucket(), region="us-east-1")
        with Stubber(client) as stub:
            stub.add_client_error(
                "get_bucket_versioning", service_error_code="AccessDenied", http_status_code=403
            )
            assert not store.is_versioned()
        with Stubber(client) as stub:
            stub.add_client_error(
                "get_bucket_versioning", service_error_code="InternalError", http_status_code=500
            )
            with pytest.raises(StoreError):
                S3Store(client, store.bucket, region="us-east-1").is_versioned()

    def test_signed_urls_carry_an_explicit_port(self, store: Store) -> None:
        assert urlsplit(store.presign_get("sha512/x", expires_in=5)).port is not None

    def test_multipart_copy_past_the_single_copy_limit(
        self, store: Store, seaweedfs: SeaweedFS
    ) -> None:
        from indexer.s3_store import S3Store

        assert isinstance(store, S3Store)
        small_limit = S3Store(
            store.client, store.bucket, region=store.region, copy_threshold=5 * 1024 * 1024
        )
        payload = os.urandom(12 * 1024 * 1024 + 3)
        source = small_limit.put("staging/big", payload)
        small_limit.copy("staging/big", "sha512/big", if_match=source.etag)
        with small_limit.open("sha512/big") as stream:
            assert hash_stream(stream).digest == hashlib.sha512(payload).hexdigest()
        small_limit.put("staging/big", payload[::-1])
        with pytest.raises(PreconditionFailed):
            small_limit.copy("staging/big", "sha512/other", if_match=source.etag)
        with pytest.raises(ObjectNotFound):
            small_limit.head("sha512/other")

    def test_multipart_copy_from_another_region(self, store: Store, other_region: Store) -> None:
        from indexer.s3_store import S3Store

        assert isinstance(store, S3Store)
        small_limit = S3Store(
            store.client, store.bucket, region=store.region, copy_threshold=5 * 1024 * 1024
        )
        payload = os.urandom(12 * 1024 * 1024 + 3)
        source = other_region.put("sha512/big", payload)
        small_limit.copy_from(other_region, "sha512/big", if_match=source.etag)
        with small_limit.open("sha512/big") as stream:
            assert hash_stream(stream).digest == hashlib.sha512(payload).hexdigest()
        other_region.put("sha512/big", payload[::-1])
        small_limit.delete("sha512/big")
        with pytest.raises(PreconditionFailed):
            small_limit.copy_from(other_region, "sha512/big", if_match=source.etag)
        with pytest.raises(ObjectNotFound):
            small_limit.head("sha512/big")

    def test_errors_are_translated(self, seaweedfs: SeaweedFS) -> None:
        from indexer.s3_store import S3Store

        missing = S3Store(seaweedfs.client(), "no-such-bucket-here", region="us-east-1")
        calls: list[Callable[[], Any]] = [
            lambda: missing.get("k"),
            lambda: missing.head("k"),
            lambda: missing.put("k", b"x"),
            lambda: missing.put_stream("k", io.BytesIO(b"x")),
            lambda: list(missing.list("")),
            lambda: missing.copy("k", "l"),
            lambda: missing.copy_from(missing, "k"),
            lambda: missing.copy("k", "l", version_id="v"),
            lambda: missing.open("k", version_id="v").__enter__(),
            lambda: missing.delete("k", every_version=True),
            missing.is_versioned,
            missing.check,
        ]
        for number, call in enumerate(calls):
            try:
                call()
            except StoreError:
                continue
            pytest.fail(f"call {number} did not raise a StoreError")


class TestVersionedS3Store(TestS3Store):
    """The whole contract again on versioned buckets: an operator may version the bucket
    holding the index and intake records too."""

    @pytest.fixture
    def store(self, seaweedfs: SeaweedFS) -> Store:
        from indexer.s3_store import S3Store

        return versioned(S3Store(seaweedfs.client(), seaweedfs.new_bucket(), region="us-east-1"))

    @pytest.fixture
    def other_region(self, seaweedfs: SeaweedFS) -> Store:
        from indexer.s3_store import S3Store

        client = seaweedfs.client("us-west-2")
        return versioned(S3Store(client, seaweedfs.new_bucket(), region="us-west-2"))

    def test_is_versioned(self, store: Store) -> None:
        assert store.is_versioned()


def versioned(store: Any) -> Any:
    set_versioning(store.client, store.bucket, "Enabled")
    return store
