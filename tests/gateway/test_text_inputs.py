"""Text inputs are checked before anything is written; unreadable records are skipped.

Regression (review finding 2): a ``POST /upload`` whose message held a lone
surrogate (JSON ``"x\\udfff"``) answered 500 after writing its records, and
from then on ``GET /upload?q=`` and ``GET /upload/<id>`` answered 500 for
everyone.
"""

from __future__ import annotations

import json
import logging

import pytest

from indexer.intake import Batch, BatchFile, batch_key
from tests.gateway.auth_helpers import basic, hawk
from tests.gateway.test_download import assert_problem
from tests.gateway.test_uploads import entry, post_raw
from tests.system import BASE, System, Uploaded

LONE_SURROGATE = b'"x\\udfff"'  # valid JSON, not valid Unicode


def raw_body(message: bytes = b'"m"', name: bytes = b'"a.bin"') -> bytes:
    return b'{"message": %s, "files": {%s: %s}}' % (message, name, json.dumps(entry()).encode())


def intake_keys(system: System) -> list[str]:
    return sorted(info.key for info in system.regions.index.list("intake/"))


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (raw_body(message=LONE_SURROGATE), "The request body holds text that is not valid Unicode"),
        (raw_body(name=LONE_SURROGATE), "The request body holds text that is not valid Unicode"),
        (raw_body(message=b'"\\ud83d"'), "The request body holds text that is not valid Unicode"),
        (raw_body(message=b'"a\\u0000b"'), "message must be text without control characters"),
        (raw_body(message=b'"bell\\u0007"'), "message must be text without control characters"),
        (raw_body(message=b'"\\u009b31m"'), "message must be text without control characters"),
        (b'{"message": "m\xff", "files": {}}', "The request body must be JSON"),
    ],
    ids=["message", "filename", "high-surrogate", "nul", "bell", "c1", "not-utf8"],
)
def test_bad_text_is_refused_before_anything_is_written(
    system: System, body: bytes, detail: str
) -> None:
    problem = assert_problem(post_raw(system, body), 400)
    assert problem["detail"] == detail
    assert intake_keys(system) == []
    assert _get(system, "/upload?q=m").status_code == 200


def test_multiline_messages_with_tabs_and_emoji_are_text(system: System) -> None:
    message = "clang 17\n\n\tbuilt from r123 \U0001f680 \u00e9t\u00e9"
    upload = Uploaded("a.bin", b"bytes", "public")
    assert system.post([upload], message=message).status_code == 200
    system.indexer.run_once()
    found = _get(system, "/upload?q=r123").json()["result"]
    assert [batch["message"] for batch in found] == [message]


def test_token_scopes_must_be_text(system: System) -> None:
    headers = {"Authorization": basic("reader"), "Content-Type": "application/json"}
    surrogate = system.client.post("/token", content=b'{"scopes": ["\\udfff"]}', headers=headers)
    assert (
        assert_problem(surrogate, 400)["detail"] == "The body holds text that is not valid Unicode"
    )
    for scopes in (b'["a\\u0000"]', json.dumps(["x" * 501]).encode()):
        body = b'{"scopes": %s}' % scopes
        response = system.client.post("/token", content=body, headers=headers)
        assert assert_problem(response, 400)["detail"].startswith("scopes must be a list")
    too_many = json.dumps({"scopes": ["s"] * 101}).encode()
    assert_problem(system.client.post("/token", content=too_many, headers=headers), 400)


@pytest.mark.parametrize(
    "query", ["q=%00", "q=a%0Ab", "q=" + "x" * 257, "q=%1B%5B31m"], ids=["nul", "nl", "long", "esc"]
)
def test_search_queries_must_be_short_text(system: System, query: str) -> None:
    for path in ("/upload", "/file"):
        response = _get(system, f"{path}?{query}")
        assert "must be text" in assert_problem(response, 400)["detail"]


def test_a_region_that_is_not_text_is_refused(system: System) -> None:
    upload = Uploaded("a.bin", b"bytes", "public")
    assert_problem(system.post([upload], query="?region=%00"), 400)
    assert intake_keys(system) == []


def test_unreadable_batch_records_are_skipped_by_every_reader(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    """A record already in the store with a lone surrogate (written before this check
    existed, or by hand) never turns a listing or a read into a 500."""
    good = Uploaded("good.bin", b"good bytes", "public")
    system.upload([good], message="good batch")
    bad = Batch(
        id=999,
        author="uploader",
        uploaded="2026-01-01T00:00:00Z",
        message="bad",
        region=system.regions.index.region,
        files={"x": BatchFile(size=1, digest="c" * 128, algorithm="sha512", visibility="public")},
    )
    raw = bad.to_json().replace(b'"bad"', b'"bad \\udfff"')
    system.regions.index.put(batch_key(999), raw, content_type="application/json")
    caplog.set_level(logging.ERROR)
    report = system.indexer.run_once()  # the catalog rebuild skips it, and goes on
    assert good.digest in report.indexed
    listed = _get(system, "/upload?q=batch")
    assert listed.status_code == 200
    assert [batch["message"] for batch in listed.json()["result"]] == ["good batch"]
    assert_problem(_get(system, "/upload/999"), 404)
    assert "intake/batches/999.json" in caplog.text


def test_an_old_catalog_entry_that_is_not_text_is_skipped(system: System) -> None:
    good = Uploaded("good.bin", b"good bytes", "public")
    system.upload([good], message="good batch")
    system.indexer.run_once()
    store = system.regions.index
    catalog = json.loads(store.get("catalog/batches/000000.json")[0])
    bad = dict(catalog["batches"][0], id=998, message="\udfff")
    catalog["batches"].append(bad)
    store.put("catalog/batches/000000.json", json.dumps(catalog).encode())
    listed = _get(system, "/upload?q=batch")
    assert [batch["id"] for batch in listed.json()["result"]] == [catalog["batches"][0]["id"]]


def _get(system: System, path: str):
    return system.client.get(path, headers={"Authorization": hawk("reader", BASE + path)})
