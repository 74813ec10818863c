"""The audit log: one hash-chained record per event, appended by every writer, verified."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from indexer.audit import HEAD_KEY, AuditLog, AuditRecord, record_key
from indexer.cli import EXIT_OK, EXIT_TAMPERED, main
from indexer.importer import import_file
from indexer.local_store import LocalStore
from tests.gateway.test_manage import patch
from tests.system import System, Uploaded


def events(log: AuditLog) -> list[tuple[str, Any]]:
    return [
        (record.event, record.digest or record.batch_id)
        for record in log.records()
        if isinstance(record, AuditRecord)
    ]


def test_every_writer_appends(system: System, tmp_path: Path) -> None:
    upload = Uploaded("tool.tar.xz", os.urandom(100), "public")
    result = system.upload([upload], message="clang 17\nbuilt from r1")
    system.indexer.run_once(check=False)
    patch(system, upload.digest, [{"op": "set_visibility", "visibility": "internal"}])
    patch(system, upload.digest, [{"op": "delete_instances", "reason": "withdrawn"}])
    imported = tmp_path / "sdk.zip"
    imported.write_bytes(os.urandom(50))
    digest = import_file(
        system.regions, imported, visibility="public", message="sdk", author="operator"
    ).digest
    log = AuditLog(system.regions.index)
    assert events(log) == [
        ("batch", result["id"]),
        ("verified", upload.digest),
        ("visibility", upload.digest),
        ("delete", upload.digest),
        ("import", digest),
    ]
    records = [record for record in log.records() if isinstance(record, AuditRecord)]
    assert (records[0].who, records[0].why) == ("uploader", "clang 17")
    assert records[2].details == {"from": "public", "to": "internal"}
    assert (records[3].who, records[3].why) == ("admin", "withdrawn")
    assert log.verify() == []


def test_alterations_and_removals_are_detected(system: System) -> None:
    log = AuditLog(system.regions.index)
    for number in range(5):
        log.append("batch", who="someone", batch_id=number + 1)
    assert log.verify() == []
    store = system.regions.index
    altered = json.loads(store.get(record_key(2))[0]) | {"who": "someone else"}
    store.put(record_key(2), json.dumps(altered).encode())
    assert log.verify() == ["record 2: altered (its hash does not match)"]
    store.delete(record_key(2))
    assert "record 2 is missing (next is 3)" in log.verify()


def test_removing_the_newest_record_is_detected(system: System) -> None:
    log = AuditLog(system.regions.index)
    for number in range(3):
        log.append("batch", who="someone", batch_id=number + 1)
    system.regions.index.delete(record_key(3))
    assert log.verify() == ["the head names record 3, the log ends at record 2"]


def test_a_writer_that_died_before_moving_the_head_is_caught_up(system: System) -> None:
    log = AuditLog(system.regions.index)
    first = log.append("batch", who="a", batch_id=1)
    head = system.regions.index.get(HEAD_KEY)[0]
    log.append("batch", who="b", batch_id=2)
    system.regions.index.put(HEAD_KEY, head)  # as if the second writer died before the head
    log.append("batch", who="c", batch_id=3)
    assert [record.seq for record in log.records() if isinstance(record, AuditRecord)] == [1, 2, 3]
    assert log.verify() == []
    assert first.seq == 1


def test_concurrent_appends_make_one_chain(system: System) -> None:
    log = AuditLog(system.regions.index)

    def append(worker: int) -> None:
        for number in range(10):
            AuditLog(system.regions.index).append("batch", who=f"w{worker}", batch_id=number + 1)

    threads = [threading.Thread(target=append, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = [record for record in log.records() if isinstance(record, AuditRecord)]
    assert [record.seq for record in records] == list(range(1, 41))
    assert log.verify() == []


def test_the_audit_command(
    system: System, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    store = system.regions.index
    if not isinstance(store, LocalStore):
        pytest.skip("the command line on the local store (the store code is shared)")
    environ = {"TOOLTOOL_DATA_DIR": str(store.root)}
    upload = Uploaded("a.bin", os.urandom(10), "public")
    system.upload([upload])
    system.indexer.run_once(check=False)
    assert main(["audit"], environ) == EXIT_OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["batch", "verified"]
    assert main(["audit", "--digest", upload.digest], environ) == EXIT_OK
    assert [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()] == [
        "verified"
    ]
    assert main(["audit", "--since", "2999-01-01T00:00:00Z"], environ) == EXIT_OK
    assert capsys.readouterr().out == ""
    assert main(["audit", "--verify"], environ) == EXIT_OK
    capsys.readouterr()
    store.delete(record_key(1))
    assert main(["audit", "--verify"], environ) == EXIT_TAMPERED
    assert "BrokenChain: record 1 is missing" in capsys.readouterr().err
