"""index_schema.json: what the indexer writes and the gateway reads, checked against the file."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.schema import (
    SCHEMA_VERSION,
    IndexObject,
    MalformedIndexObject,
    Tombstone,
    Upload,
    index_key,
    schema_errors,
)

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "index_schema.json"
DIGEST = "ab" * 64
NOW = "2026-11-29T12:00:00Z"


def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def sample(**changes) -> IndexObject:
    obj = IndexObject(
        digest=DIGEST,
        size=42,
        visibility="internal",
        instances=("us-west-2", "us-east-1"),
        uploads=(Upload(7, "clang.tar.xz", "project/releng/bug1", "clang 17", NOW),),
        verified_at=NOW,
        updated_at=NOW,
        etags={"us-west-2": '"5d41402abc4b2a76b9719d911017c592"', "us-east-1": '"abc-2"'},
    )
    return obj.with_changes(**changes)


def test_schema_is_2020_12_and_versioned() -> None:
    loaded = schema()
    assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(loaded)
    assert loaded["properties"]["schema_version"] == {
        "description": loaded["properties"]["schema_version"]["description"],
        "const": SCHEMA_VERSION,
    }


@pytest.mark.parametrize(
    "obj",
    [
        sample(),
        sample(visibility="public", uploads=(Upload(None, "f", "op", "", NOW),)),
        sample(instances=(), deleted=Tombstone("admin", NOW, "leaked", ("us-east-1",))),
    ],
)
def test_written_objects_follow_the_schema_file(obj: IndexObject) -> None:
    raw = obj.to_json()
    jsonschema.Draft202012Validator(schema()).validate(json.loads(raw))
    assert IndexObject.from_json(raw, key=index_key(DIGEST)) == obj.with_changes(
        instances=tuple(sorted(obj.instances))
    )


def test_etags_are_kept_for_listed_regions_only() -> None:
    one = sample(instances=("us-east-1",))
    assert one.etags == {"us-east-1": '"abc-2"'}
    assert json.loads(one.to_json())["etags"] == {"us-east-1": '"abc-2"'}
    assert sample().without_regions(["us-east-1"]).etags == {
        "us-west-2": '"5d41402abc4b2a76b9719d911017c592"'
    }
    added = sample(instances=()).with_copy("eu-west-1", '"e"')
    assert (added.instances, added.etags) == (("eu-west-1",), {"eu-west-1": '"e"'})


def test_objects_written_before_etags_are_read() -> None:
    raw = _mutated(lambda data: data.pop("etags"))
    assert IndexObject.from_json(raw, key=index_key(DIGEST)).etags == {}


def test_output_is_deterministic() -> None:
    assert sample().to_json() == sample(instances=("us-east-1", "us-west-2")).to_json()
    reordered = dict(reversed(list(sample().etags.items())))
    assert sample().to_json() == sample(etags=reordered).to_json()
    assert list(json.loads(sample().to_json())) == sorted(json.loads(sample().to_json()))


@pytest.mark.parametrize(
    "invalid",
    [
        {"size": -1},
        {"visibility": "secret"},
        {"digest": "AB" * 64},
        {"instances": ("us-east-1", "us-east-1")},
        {"uploads": (Upload(0, "f", "a", "m", NOW),)},
        {"verified_at": "yesterday"},
        {"etags": {"us-east-1": ""}},
        {"etags": {"us-east-1": '"has a space"'}},
    ],
)
def test_the_writer_refuses_invalid_objects(invalid: dict) -> None:
    with pytest.raises(MalformedIndexObject):
        sample(**invalid).to_json()


def _mutated(change) -> bytes:
    data = json.loads(sample().to_json())
    change(data)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        _mutated(lambda data: data.pop("size")),
        _mutated(lambda data: data.update(schema_version=2)),
        _mutated(lambda data: data.update(unexpected=True)),
        _mutated(lambda data: data.update(size="42")),
        _mutated(lambda data: data.update(visibility="PUBLIC")),
        _mutated(lambda data: data.update(digest="cd" * 64)),  # not the key's digest
        _mutated(lambda data: data.update(instances=["../us-east-1"])),
        _mutated(lambda data: data.update(deleted={"by": "x"})),
        _mutated(lambda data: data.update(etags=[])),
        _mutated(lambda data: data.update(etags={"us-east-1": 5})),
        _mutated(lambda data: data.update(etags={"../us-east-1": '"x"'})),
    ],
)
def test_the_reader_refuses_malformed_objects(raw: bytes) -> None:
    with pytest.raises(MalformedIndexObject) as caught:
        IndexObject.from_json(raw, key=index_key(DIGEST))
    assert index_key(DIGEST) in str(caught.value)
    # The reader's verdict agrees with the schema file (or the key check).
    try:
        data = json.loads(raw)
        jsonschema.Draft202012Validator(schema()).validate(data)
    except (ValueError, jsonschema.ValidationError):
        return
    assert data["digest"] != DIGEST


# Values a mutation may put anywhere: of every JSON type, near-misses of the real ones.
_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),
    st.sampled_from(["", "public", "internal", "Public", NOW, NOW + "x", "us-east-1", DIGEST,
                     DIGEST.upper(), '"etag"', "a" * 300, "\n", "2026-13-40T99:99:99Z"]),
    st.lists(st.sampled_from(["us-east-1", "", 1, None]), max_size=3),
    st.dictionaries(st.sampled_from(["us-east-1", "", "x y"]), st.sampled_from(['"e"', 1]),
                    max_size=2),
)  # fmt: skip


def _paths(value: object, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_the_compiled_check_agrees_with_jsonschema(data: st.DataObject) -> None:
    """The fast validator decides validity on reads; it must never pass what jsonschema
    fails (nor fail what it passes)."""
    document = json.loads(sample(deleted=None).to_json())
    if data.draw(st.booleans()):
        document = json.loads(
            sample(
                deleted=Tombstone(at=NOW, by="admin", reason="r", regions=("us-east-1",))
            ).to_json()
        )
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(document)))
        action = data.draw(st.sampled_from(["set", "drop", "add"]))
        if not path:
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if action == "set":
            parent[path[-1]] = data.draw(_ODD_VALUES)
        elif action == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["extra", "visibility", "size", "x"]))] = data.draw(
                _ODD_VALUES
            )
    expected = not list(jsonschema.Draft202012Validator(schema()).iter_errors(document))
    assert (schema_errors(document) == []) is expected
