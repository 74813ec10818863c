"""The upload API: validation with the legacy messages, permissions, batch and file reads."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from indexer.job import Indexer
from tests.gateway.auth_helpers import PREFIX, basic, hawk
from tests.gateway.test_download import assert_problem
from tests.system import BASE, System, Uploaded

DIGEST = "ab" * 64


def entry(**changes: Any) -> dict[str, Any]:
    return {"size": 10, "digest": DIGEST, "algorithm": "sha512", "visibility": "public"} | changes


def post_raw(system: System, body: Any, client_id: str = "uploader") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return system.client.post(
        "/upload",
        content=raw,
        headers={
            "Content-Type": "application/json",
            "Authorization": hawk(
                client_id, f"{BASE}/upload", "POST", body=raw, content_type="application/json"
            ),
        },
    )


VALIDATION = [
    ({"message": "", "files": {"a": entry()}}, "message must be non-empty"),
    ({"message": "  ", "files": {"a": entry()}}, "message must be non-empty"),
    ({"message": 5, "files": {"a": entry()}}, "message must be non-empty"),
    ({"files": {"a": entry()}}, "message must be non-empty"),
    ({"message": "m", "files": {}}, "a batch must include at least one file"),
    ({"message": "m", "files": []}, "a batch must include at least one file"),
    ({"message": "m"}, "a batch must include at least one file"),
    (
        {"message": "m", "author": "me", "files": {"a": entry()}},
        "Author must NOT be specified for upload.",
    ),
    (
        {"message": "m", "files": {"a": entry(algorithm="sha256")}},
        "`sha512` is the only allowed digest algorithm",
    ),
    ({"message": "m", "files": {"a": entry(digest="abc")}}, "Invalid sha512 digest"),
    ({"message": "m", "files": {"a": entry(digest=DIGEST.upper())}}, "Invalid sha512 digest"),
    ({"message": "m", "files": {"a": entry(digest=DIGEST + "\n")}}, "Invalid sha512 digest"),
    (
        {"message": "m", "files": {"a": entry(size=-1)}},
        "Invalid size for 'a': must be a non-negative integer",
    ),
    (
        {"message": "m", "files": {"a": entry(size="10")}},
        "Invalid size for 'a': must be a non-negative integer",
    ),
    (
        {"message": "m", "files": {"a": entry(size=1.5)}},
        "Invalid size for 'a': must be a non-negative integer",
    ),
    (
        {"message": "m", "files": {"a": entry(size=True)}},
        "Invalid size for 'a': must be a non-negative integer",
    ),
    (
        {"message": "m", "files": {"a": entry(size=6 * 1024**3)}},
        "'a' is larger than 5 GiB, the most one upload can hold",
    ),
    (
        {"message": "m", "files": {"a": entry(visibility="secret")}},
        "Invalid visibility for 'a': must be public or internal",
    ),
    (
        {"message": "m", "files": {"": entry()}},
        "Invalid filename '': no /, \\ or control characters",
    ),
    (
        {"message": "m", "files": {"a/b": entry()}},
        "Invalid filename 'a/b': no /, \\ or control characters",
    ),
    (
        {"message": "m", "files": {"a\\b": entry()}},
        "Invalid filename 'a\\\\b': no /, \\ or control characters",
    ),
    (
        {"message": "m", "files": {"..": entry()}},
        "Invalid filename '..': no /, \\ or control characters",
    ),
    (
        {"message": "m", "files": {"a\nb": entry()}},
        "Invalid filename 'a\\nb': no /, \\ or control characters",
    ),
    ({"message": "m", "files": {"a": entry(), "b": entry(size=11)}}, "Size mismatch for b"),
    (
        {"message": "m", "files": {"a": entry(), "b": entry(visibility="internal")}},
        "Cannot change already existing file's visibility level.",
    ),
    ({"message": "m", "files": {"a": "x"}}, "Invalid entry for 'a': must be an object"),
    ({"message": "m", "files": {"a": entry(extra=1)}}, "Unknown field 'extra' for 'a'"),
    ({"message": "m", "files": {"a": entry()}, "other": 1}, "Unknown field 'other'"),
    ([], "The request body must be a JSON object"),
    (b"{not json", "The request body must be JSON"),
]


@pytest.mark.parametrize(("body", "message"), VALIDATION, ids=[m for _, m in VALIDATION])
def test_validation_errors(system: System, body: Any, message: str) -> None:
    response = post_raw(system, body)
    problem = assert_problem(response, 400)
    assert problem["detail"] == message
    assert list(system.regions.index.list("intake/")) == []


def test_conflicts_with_stored_files(system: System) -> None:
    stored = Uploaded("stored.bin", os.urandom(100), "public")
    system.upload([stored])
    system.indexer.run_once()
    other_visibility = Uploaded("x.bin", stored.data, "internal")
    problem = assert_problem(system.post([other_visibility]), 400)
    assert problem["detail"] == "Cannot change already existing file's visibility level."
    body = {"message": "m", "files": {"y.bin": entry(digest=stored.digest, size=101)}}
    assert assert_problem(post_raw(system, body), 400)["detail"] == "Size mismatch for y.bin"


def test_unverified_claims_never_block_an_upload(system: System) -> None:
    """Squatting: a claim with the wrong size or the other visibility, never uploaded,
    does not block the owner; the first verified upload wins, the claim fails later."""
    owner = Uploaded("tool.tar.xz", os.urandom(100), "internal")
    wrong_size = {"message": "m", "files": {"a": entry(digest=owner.digest, size=5)}}
    assert post_raw(system, wrong_size, client_id="squatter").status_code == 200
    squat = Uploaded("b", owner.data, "public")
    assert system.post([squat], client_id="squatter").status_code == 200
    result = system.upload([owner])
    assert "put_url" in result["files"]["tool.tar.xz"]
    system.indexer.run_once(check=False)
    assert system.download(owner.digest, client_id="reader") == (302, owner.data)
    assert system.download(owner.digest)[0] == 403  # still internal
    # The claims wait (in the squatter's own quota) until they expire, then are refused
    # (by a checking pass: frequent ones do not even read a record whose bytes never came).
    system.indexer.run_once(check=False)
    assert system.indexer.failures() == []
    later = Indexer(system.regions, clock=lambda: time.time() + 2 * 86400)
    later.run_once()
    refused = {failure["filename"] for failure in system.indexer.failures()}
    assert refused == {"a", "b"}


def test_needs_credentials(system: System) -> None:
    body = json.dumps({"message": "m", "files": {"a": entry()}}).encode()
    response = system.client.post(
        "/upload", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 401)
    assert list(system.regions.index.list("intake/")) == []


@pytest.mark.parametrize(
    ("client_id", "visibility", "detail"),
    [
        ("nobody", "public", "no permission to upload public files"),
        ("reader", "internal", "no permission to upload internal files"),
        ("public-uploader", "internal", "no permission to upload internal files"),
    ],
)
def test_needs_the_scope(system: System, client_id: str, visibility: str, detail: str) -> None:
    upload = Uploaded("a.bin", b"abc", visibility)
    problem = assert_problem(system.post([upload], client_id=client_id), 403)
    assert problem["detail"] == detail


def test_mixed_batch_needs_both_scopes(system: System) -> None:
    files = [Uploaded("a.bin", b"a", "public"), Uploaded("b.bin", b"b", "internal")]
    problem = assert_problem(system.post(files, client_id="public-uploader"), 403)
    assert problem["detail"] == "no permission to upload internal files"
    assert system.post(files).status_code == 200


def test_bearer_uploads(system: System) -> None:
    token = system.client.post("/token", headers={"Authorization": basic("uploader")}).json()
    upload = Uploaded("a.bin", os.urandom(50), "internal")
    body = json.dumps({"message": "m", "files": {"a.bin": upload.entry()}}).encode()
    response = system.client.post(
        "/upload",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token['token']}"},
    )
    assert response.status_code == 200
    narrow = system.client.post(
        "/token",
        content=json.dumps({"scopes": [f"{PREFIX}/upload/public"]}).encode(),
        headers={"Authorization": basic("uploader"), "Content-Type": "application/json"},
    ).json()
    response = system.client.post(
        "/upload",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {narrow['token']}"},
    )
    assert assert_problem(response, 403)["detail"] == "no permission to upload internal files"


def test_complete(system: System) -> None:
    accepted = system.complete(DIGEST)
    assert accepted.status_code == 202
    assert accepted.json() == {"digest": DIGEST, "status": "accepted"}
    path = "/upload/complete/sha512/nope"
    response = system.client.get(path, headers={"Authorization": hawk("uploader", BASE + path)})
    assert assert_problem(response, 400)["detail"] == "Invalid sha512 digest"
    assert_problem(system.client.get(f"/upload/complete/sha512/{DIGEST}"), 401)
    assert_problem(system.complete(DIGEST, client_id="reader"), 403)
    assert_problem(system.complete(DIGEST, client_id="nobody"), 403)


def test_batch_reads(system: System) -> None:
    public = Uploaded("pub.tar.gz", os.urandom(20), "public")
    internal = Uploaded("int.tar.gz", os.urandom(20), "internal")
    first = system.upload([public], message="Clang 17 for linux64")
    second = system.upload([internal], message="private SDK")
    system.indexer.run_once()
    # The bare batch object (the legacy get_batch), its files with has_instances.
    shown = system.client.get(f"/upload/{first['id']}").json()
    assert shown == {k: v for k, v in first.items() if k != "files"} | {
        "files": {"pub.tar.gz": public.entry() | {"has_instances": True}}
    }
    assert_problem(system.client.get(f"/upload/{second['id']}"), 403)
    path = f"/upload/{second['id']}"
    assert (
        system.client.get(path, headers={"Authorization": hawk("reader", BASE + path)}).status_code
        == 200
    )
    for missing in ("999999", "abc", "-1", "1" * 40):
        assert_problem(system.client.get(f"/upload/{missing}"), 404)
    found = system.client.get("/upload", params={"q": "clang"}).json()["result"]
    assert [batch["id"] for batch in found] == [first["id"]]
    assert system.client.get("/upload", params={"q": "sdk"}).json()["result"] == []
    path = "/upload?q=uploader"
    everything = system.client.get(path, headers={"Authorization": hawk("reader", BASE + path)})
    assert [b["id"] for b in everything.json()["result"]] == [first["id"], second["id"]]
    listed_file = everything.json()["result"][0]["files"]["pub.tar.gz"]
    assert listed_file["has_instances"] is True
    for query in ("", "?q=", "?q=%20"):
        problem = assert_problem(system.client.get(f"/upload{query}"), 400)
        assert problem["detail"].startswith("q is required")


def test_files_not_yet_uploaded_show_no_instances(system: System) -> None:
    stored = Uploaded("stored.bin", os.urandom(20), "public")
    system.upload([stored])
    system.indexer.run_once(check=False)
    waiting = Uploaded("waiting.bin", os.urandom(20), "public")
    posted = system.post([stored, waiting]).json()["result"]
    assert posted["files"]["stored.bin"]["has_instances"] is True
    assert "put_url" not in posted["files"]["stored.bin"]
    assert posted["files"]["waiting.bin"]["has_instances"] is False
    shown = system.client.get(f"/upload/{posted['id']}").json()
    assert {name: file["has_instances"] for name, file in shown["files"].items()} == {
        "stored.bin": True,
        "waiting.bin": False,
    }


def test_file_reads(system: System) -> None:
    public = Uploaded("clang-17.tar.xz", os.urandom(20), "public")
    internal = Uploaded("secret-sdk.zip", os.urandom(20), "internal")
    system.upload([public, internal])
    system.indexer.run_once()
    region = system.regions.index.region
    expected = public.entry() | {"has_instances": True, "instances": [region]}
    assert system.client.get(f"/file/sha512/{public.digest}").json() == expected
    assert_problem(system.client.get(f"/file/sha512/{internal.digest}"), 403)
    assert_problem(system.client.get(f"/file/sha512/{DIGEST}"), 404)
    assert_problem(system.client.get("/file/sha512/xyz"), 400)
    by_prefix = system.client.get("/file", params={"q": public.digest[:8]}).json()["result"]
    assert by_prefix == [expected]
    by_name = system.client.get("/file", params={"q": "CLANG"}).json()["result"]
    assert by_name == [expected]
    assert system.client.get("/file", params={"q": "secret"}).json()["result"] == []
    path = "/file?q=secret"
    shown = system.client.get(path, headers={"Authorization": hawk("reader", BASE + path)})
    assert [f["digest"] for f in shown.json()["result"]] == [internal.digest]
    assert_problem(system.client.get("/file"), 400)
    assert_problem(system.client.get("/file", params={"q": "  "}), 400)


def test_preferred_region_falls_back(system: System) -> None:
    upload = Uploaded("a.bin", os.urandom(10), "public")
    result = system.upload([upload], query="?region=nowhere-1")
    system.indexer.run_once()
    assert system.download(upload.digest) == (302, upload.data)
    assert result["files"]["a.bin"]["digest"] == upload.digest


def test_huge_bodies_are_413(system: System) -> None:
    body = b'{"message": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert_problem(post_raw(system, body), 413)


def test_deeply_nested_bodies_are_400(system: System) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    assert_problem(post_raw(system, body), 400)
    response = system.client.post(
        "/token",
        content=body[:30_000] + body[-30_000:],
        headers={"Content-Type": "application/json", "Authorization": basic("uploader")},
    )
    assert_problem(response, 400)


def test_pending_records_say_when_their_put_urls_expire(system: System) -> None:
    """No later than the record says: the indexer copies once when no PUT can land."""
    from datetime import UTC, datetime
    from urllib.parse import parse_qs, urlsplit

    stored = Uploaded("stored.bin", os.urandom(20), "public")
    system.upload([stored])
    Indexer(system.regions).run_once(check=False)
    new = Uploaded("new.bin", os.urandom(20), "public")
    before = time.time()
    files = system.upload([new, stored])["files"]
    records = {
        record["digest"]: record
        for info in system.regions.index.list("intake/pending/")
        for record in [json.loads(system.regions.index.get(info.key)[0])]
    }
    assert "put_url_expires" not in records[stored.digest]  # no URL: nothing to say
    query = parse_qs(urlsplit(files["new.bin"]["put_url"]).query)
    if "X-Amz-Date" in query:
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        expires = signed.replace(tzinfo=UTC).timestamp() + int(query["X-Amz-Expires"][0])
    else:
        expires = int(query["expires"][0])
    recorded = records[new.digest]["put_url_expires"]
    assert before + 60 - 1 <= expires <= recorded <= time.time() + 60
