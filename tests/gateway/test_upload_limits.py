"""What one upload request may cost: writes bounded by its size, pending work per caller bounded.

Regression (review finding 4): one 0.47 MB ``POST /upload`` naming 1000
random digests with a 64 KiB message of emoji wrote 760 MB (the message in
every pending record, as ``\\u`` escapes); a second such request took over a
minute, since the conflict check listed every pending record for each file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from gateway.uploads import MAX_CONCURRENT_POSTS
from indexer.intake import PENDING
from indexer.stores import ObjectInfo, Store
from tests.conftest import make_local_store, make_system
from tests.gateway.auth_helpers import basic
from tests.gateway.stalled_bodies import answered_behind
from tests.gateway.test_download import assert_problem
from tests.gateway.test_uploads import post_raw
from tests.system import System, Uploaded

EMOJI_MESSAGE = "\U0001f680" * 65536


def big_batch(count: int = 1000, *, size: int = 10, message: str = EMOJI_MESSAGE) -> dict:
    files = {
        f"file-{number:04}.bin": {
            "size": size,
            "digest": os.urandom(64).hex(),
            "algorithm": "sha512",
            "visibility": "public",
        }
        for number in range(count)
    }
    return {"message": message, "files": files}


def stored_bytes(store: Store, prefix: str = "") -> int:
    return sum(info.size for info in store.list(prefix))


def test_a_request_writes_a_small_multiple_of_its_size(system: System) -> None:
    body = json.dumps(big_batch()).encode()
    assert post_raw(system, body).status_code == 200
    written = stored_bytes(system.regions.index, "intake/")
    assert written < 3 * len(body), (written, len(body))
    # The message is stored once, in the batch record, as UTF-8.
    batches = list(system.regions.index.list("intake/batches/"))
    assert len(batches) == 1
    assert batches[0].size < 2 * len(EMOJI_MESSAGE.encode("utf-8"))


def test_pending_records_do_not_repeat_the_message(system: System) -> None:
    upload = Uploaded("a.bin", b"data", "public")
    assert system.post([upload], message="m" * 60000).status_code == 200
    [pending] = list(system.regions.index.list(PENDING))
    assert pending.size < 1000


@pytest.fixture
def quota_system(tmp_path: Path) -> System:
    """The system fixture's gateway with a small per-caller quota."""
    store = make_local_store(tmp_path / "data")
    return make_system(store, tmp_path, max_pending_files=5, max_pending_bytes=1000)


def test_pending_files_per_caller_are_limited(quota_system: System) -> None:
    assert post_raw(quota_system, big_batch(4, message="m")).status_code == 200
    problem = assert_problem(post_raw(quota_system, big_batch(2, message="m")), 429)
    assert problem["detail"].startswith("Too much pending: 4 files pending and 2 more")
    assert "at most 5 files" in problem["detail"]
    # Another caller has a quota of their own.
    other = post_raw(quota_system, big_batch(2, message="m"), client_id="squatter")
    assert other.status_code == 200


def test_pending_bytes_per_caller_are_limited(quota_system: System) -> None:
    assert post_raw(quota_system, big_batch(1, size=900, message="m")).status_code == 200
    response = post_raw(quota_system, big_batch(1, size=200, message="m"))
    problem = assert_problem(response, 429)
    assert "900 bytes pending and 200 more" in problem["detail"]
    assert response.headers["retry-after"].isdigit()
    before = sorted(info.key for info in quota_system.regions.index.list("intake/"))
    assert_problem(post_raw(quota_system, big_batch(1, size=200, message="m")), 429)
    after = sorted(info.key for info in quota_system.regions.index.list("intake/"))
    assert before == after  # a refused batch writes nothing


def test_finished_work_frees_the_quota(quota_system: System) -> None:
    uploads = [Uploaded(f"f{number}.bin", os.urandom(150), "public") for number in range(5)]
    quota_system.upload(uploads)
    assert_problem(quota_system.post([Uploaded("x.bin", b"x", "public")]), 429)
    quota_system.indexer.run_once(check=False)
    assert quota_system.post([Uploaded("x.bin", b"x", "public")]).status_code == 200


def test_stored_files_count_as_files_but_not_bytes(quota_system: System) -> None:
    stored = Uploaded("stored.bin", os.urandom(900), "public")
    quota_system.upload([stored])
    quota_system.indexer.run_once(check=False)
    again = quota_system.post([stored]).json()["result"]["files"]["stored.bin"]
    assert "put_url" not in again
    assert quota_system.post([Uploaded("new.bin", os.urandom(900), "public")]).status_code == 200


class CountingStore:
    """A store that counts what each call reads: listed keys and fetched objects."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.region = store.region
        self.listed = 0
        self.fetched = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for info in self._store.list(prefix):
            self.listed += 1
            yield info

    def get(self, key: str) -> tuple[bytes, ObjectInfo]:
        self.fetched += 1
        return self._store.get(key)

    def open(self, key: str, *, if_match: str | None = None) -> BinaryIO:
        self.fetched += 1
        return self._store.open(key, if_match=if_match)  # type: ignore[return-value]


def test_a_post_costs_what_its_batch_holds_not_what_everyone_has_pending(
    system: System,
) -> None:
    for _ in range(3):
        assert (
            post_raw(system, big_batch(300, message="m"), client_id="squatter").status_code == 200
        )
    counting = CountingStore(system.regions.index)
    system.regions._stores[counting.region] = counting  # type: ignore[assignment]
    try:
        assert post_raw(system, big_batch(2, message="m")).status_code == 200
    finally:
        system.regions._stores[counting.region] = counting._store
    # The batch's 2 index lookups and the counter; the caller's own (empty) pending listing.
    assert counting.listed == 0
    assert counting.fetched <= 4


def test_the_local_store_lists_only_below_the_prefix(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    if system.regions.index.region != "local":
        pytest.skip("S3 lists by prefix on the server")
    import indexer.local_store

    for _ in range(2):
        post_raw(system, big_batch(200, message="m"), client_id="squatter")
    walked: list[str] = []
    real_walk = os.walk

    def walk(top: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for entry in real_walk(top, *args, **kwargs):
            walked.append(str(entry[0]))
            yield entry

    monkeypatch.setattr(indexer.local_store.os, "walk", walk)
    assert post_raw(system, big_batch(2, message="m")).status_code == 200
    assert len(walked) <= 3, walked


def test_slow_bodies_hold_up_no_other_upload(tmp_path: Path) -> None:
    """Posts whose bodies never end (a slowloris), from a client holding no tooltool scope
    at all, hold none of the posts handled at once: an uploader's batch is answered."""
    system = make_system(make_local_store(tmp_path / "data"), tmp_path)

    def bearer(client_id: str) -> dict[str, str]:
        answer = system.client.post("/token", headers={"Authorization": basic(client_id)})
        return {"Authorization": f"Bearer {answer.json()['token']}"}

    upload = Uploaded("a.bin", b"data", "public")
    body = json.dumps({"message": "m", "files": {"a.bin": upload.entry()}}).encode()
    status, answer = answered_behind(
        system.client.app,
        "/upload",
        body,
        stalled=MAX_CONCURRENT_POSTS,
        headers=bearer("uploader"),
        stalled_headers=bearer("nobody"),
    )
    assert status == 200
    assert answer["result"]["files"]["a.bin"]["digest"] == upload.digest


def test_a_host_longer_than_any_name_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """The local store's PUT URLs hold the Host the client sent: one longer than any DNS
    name is a 400, before the batch is recorded."""
    system = make_system(make_local_store(tmp_path / "data"), tmp_path)
    answer = system.client.post("/token", headers={"Authorization": basic("uploader")})
    upload = Uploaded("a.bin", b"data", "public")
    body = {"message": "m", "files": {"a.bin": upload.entry()}}
    headers = {"Authorization": f"Bearer {answer.json()['token']}", "Host": "a" * 254}
    response = system.client.post("/upload", json=body, headers=headers)
    detail = assert_problem(response, 400)["detail"]
    assert detail == "The Host header names no host: over 253 characters"
    assert stored_bytes(system.regions.index, "intake/") == 0
    headers["Host"] = "a" * 253
    response = system.client.post("/upload", json=body, headers=headers)
    assert response.status_code == 200, response.text
    put_url = response.json()["result"]["files"]["a.bin"]["put_url"]
    assert put_url.startswith(f"http://{'a' * 253}:80/__store__/")
