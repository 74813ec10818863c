"""``PATCH /file/sha512/<digest>`` and the indexer's set-visibility and delete commands."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from indexer.cli import EXIT_OK, EXIT_UNKNOWN, main
from indexer.index import read_index
from indexer.local_store import LocalStore
from indexer.schema import blob_key
from indexer.stores import ObjectNotFound
from tests.gateway.auth_helpers import hawk
from tests.gateway.test_download import assert_problem
from tests.system import BASE, System, Uploaded

UNKNOWN = "f" * 128


def patch(system: System, digest: str, body: Any, *, client_id: str | None = "admin") -> Any:
    """As the legacy tooltool.py sends it: Hawk-signed, the JSON body's hash included."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    path = f"/file/sha512/{digest}"
    headers = {"Content-Type": "application/json"}
    if client_id is not None:
        headers["Authorization"] = hawk(
            client_id, BASE + path, "PATCH", body=raw, content_type="application/json"
        )
    return system.client.patch(path, content=raw, headers=headers)


def stored(system: System, visibility: str = "public") -> Uploaded:
    upload = Uploaded("tool.tar.xz", os.urandom(300), visibility)
    system.upload([upload])
    system.indexer.run_once(check=False)
    return upload


def test_set_visibility(system: System) -> None:
    upload = stored(system)
    assert system.download(upload.digest) == (302, upload.data)
    response = patch(system, upload.digest, [{"op": "set_visibility", "visibility": "internal"}])
    assert response.status_code == 200
    assert response.json() == {
        "size": 300,
        "digest": upload.digest,
        "algorithm": "sha512",
        "visibility": "internal",
        "has_instances": True,
        "instances": [system.regions.index.region],
    }
    assert system.download(upload.digest)[0] == 403
    assert system.download(upload.digest, client_id="reader") == (302, upload.data)
    back = patch(system, upload.digest, [{"op": "set_visibility", "visibility": "public"}])
    assert back.json()["visibility"] == "public"
    assert system.download(upload.digest) == (302, upload.data)


def test_delete_then_upload_again(system: System) -> None:
    upload = stored(system)
    body = [{"op": "delete_instances", "reason": "licence withdrawn"}]
    response = patch(system, upload.digest, body)
    assert response.status_code == 200
    assert response.json()["has_instances"] is False
    assert response.json()["instances"] == []
    assert_problem(system.client.get(f"/sha512/{upload.digest}"), 404)
    with pytest.raises(ObjectNotFound):
        system.regions.index.head(blob_key(upload.digest))
    found = read_index(system.regions.index, upload.digest)
    assert found is not None
    tombstone = found[0].deleted
    assert tombstone is not None
    assert (tombstone.by, tombstone.reason) == ("admin", "licence withdrawn")
    assert tombstone.regions == (system.regions.index.region,)
    # Deleting again keeps the first tombstone.
    assert patch(system, upload.digest, [{"op": "delete_instances"}]).status_code == 200
    again = read_index(system.regions.index, upload.digest)
    assert again is not None
    assert again[0].deleted == tombstone
    # The same bytes uploaded again restore the file.
    result = system.upload([upload])
    assert "put_url" in result["files"]["tool.tar.xz"]
    system.indexer.run_once(check=False)
    assert system.download(upload.digest) == (302, upload.data)
    restored = read_index(system.regions.index, upload.digest)
    assert restored is not None
    assert restored[0].deleted is None


def test_several_operations_apply_in_order(system: System) -> None:
    upload = stored(system)
    body = [
        {"op": "set_visibility", "visibility": "internal", "reason": "moved"},
        {"op": "delete_instances", "reason": "gone"},
    ]
    answer = patch(system, upload.digest, body).json()
    assert (answer["visibility"], answer["has_instances"]) == ("internal", False)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"op": "delete_instances"}, "The body must be a non-empty list of operations"),
        ([], "The body must be a non-empty list of operations"),
        (["delete_instances"], "Each operation must be an object with an op"),
        ([{"visibility": "public"}], "An operation lacks its op"),
        ([{"op": "rename"}], "Unknown op: expected set_visibility or delete_instances"),
        ([{"op": "set_visibility"}], "visibility must be public or internal"),
        (
            [{"op": "set_visibility", "visibility": "secret"}],
            "visibility must be public or internal",
        ),
        ([{"op": "delete_instances", "force": True}], "Unknown field 'force' in delete_instances"),
        (
            [{"op": "delete_instances", "reason": 5}],
            "reason must be text of at most 1000 characters",
        ),
        (b"not json", "The request body must be JSON"),
        (b'[{"op": "delete_instances", "reason": "\\udfff"}]', None),
    ],
    ids=lambda value: str(value)[:30],
)
def test_bad_bodies_are_400(system: System, body: Any, detail: str | None) -> None:
    upload = stored(system)
    problem = assert_problem(patch(system, upload.digest, body), 400)
    if detail is not None:
        assert problem["detail"] == detail
    assert system.download(upload.digest) == (302, upload.data)  # nothing changed


def test_who_may_manage(system: System) -> None:
    upload = stored(system)
    body = [{"op": "set_visibility", "visibility": "internal"}]
    assert_problem(patch(system, "not-a-digest", body), 400)
    unauthenticated = patch(system, upload.digest, body, client_id=None)
    assert_problem(unauthenticated, 401)
    problem = assert_problem(patch(system, upload.digest, body, client_id="uploader"), 403)
    assert problem["detail"] == "no permission to manage files"
    assert_problem(patch(system, UNKNOWN, body), 404)
    assert system.download(upload.digest) == (302, upload.data)


def test_a_change_is_seen_at_once_on_the_replica_that_made_it(
    make_gateway: Any, tmp_path: Path
) -> None:
    """With the index cache on (5 s), the replica that made the change forgets its cached
    answer: an anonymous download is refused at once, not a cache bound later."""
    from gateway.settings import AuthSettings
    from tests.gateway.auth_helpers import clients_file_entries

    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    gateway = make_gateway(auth=AuthSettings(clients_file=clients, jwt_secret="s" * 32))
    digest = gateway.add(os.urandom(50), "public")
    client = gateway.client()
    assert client.get(f"/sha512/{digest}").status_code == 302  # now cached
    raw = json.dumps([{"op": "set_visibility", "visibility": "internal"}]).encode()
    path = f"/file/sha512/{digest}"
    signed = hawk("admin", BASE + path, "PATCH", body=raw, content_type="application/json")
    headers = {"Authorization": signed, "Content-Type": "application/json"}
    assert client.patch(path, content=raw, headers=headers).status_code == 200
    assert_problem(client.get(f"/sha512/{digest}"), 403)


@pytest.fixture
def local_environ(system: System) -> dict[str, str]:
    store = system.regions.index
    if not isinstance(store, LocalStore):
        pytest.skip("the command line on the local store (the store code is shared)")
    return {"TOOLTOOL_DATA_DIR": str(Path(store.root))}


def test_the_operator_commands(
    system: System, local_environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    upload = stored(system)
    argv = ["set-visibility", upload.digest, "internal", "--reason", "customer asked"]
    assert main(argv, local_environ) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["visibility"] == "internal"
    assert system.download(upload.digest)[0] == 403
    argv = ["delete", upload.digest, "--reason", "superseded", "--by", "releng-oncall"]
    assert main(argv, local_environ) == EXIT_OK
    capsys.readouterr()
    found = read_index(system.regions.index, upload.digest)
    assert found is not None
    assert found[0].deleted is not None
    assert found[0].deleted.by == "releng-oncall"
    assert main(["delete", UNKNOWN, "--reason", "x"], local_environ) == EXIT_UNKNOWN
    assert "UnknownFile: no file with digest" in capsys.readouterr().err


def test_a_flip_is_seen_by_another_replica_within_its_cache_bound(
    make_gateway: Any, tmp_path: Path
) -> None:
    """Two gateways over one store: the one that did not make the change answers from
    its cache for at most TOOLTOOL_INDEX_CACHE_SECONDS, then refuses."""
    import time

    from gateway.settings import AuthSettings
    from tests.gateway.auth_helpers import clients_file_entries

    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    gateway = make_gateway(
        auth=AuthSettings(clients_file=clients, jwt_secret="s" * 32), index_cache_seconds=1
    )
    digest = gateway.add(os.urandom(50), "public")
    one, other = gateway.client(), gateway.client()  # two replicas, one store
    assert other.get(f"/sha512/{digest}").status_code == 302  # cached there
    raw = json.dumps([{"op": "set_visibility", "visibility": "internal"}]).encode()
    path = f"/file/sha512/{digest}"
    signed = hawk("admin", BASE + path, "PATCH", body=raw, content_type="application/json")
    headers = {"Authorization": signed, "Content-Type": "application/json"}
    changed = time.monotonic()
    assert one.patch(path, content=raw, headers=headers).status_code == 200
    while other.get(f"/sha512/{digest}").status_code == 302:
        assert time.monotonic() - changed < 3, "still served past the cache bound (1 s)"
        time.sleep(0.05)
    assert_problem(other.get(f"/sha512/{digest}"), 403)
