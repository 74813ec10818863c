"""Request bodies: any bytes or JSON are a parsed request or a 400 problem, never an exception.

``POST /upload`` (:func:`gateway.upload_parsing.parse_upload`), ``PATCH
/file/sha512/<d>`` (:func:`gateway.manage.parse_operations`), ``POST
/token``'s optional body and ``POST /resolve`` (:func:`gateway.resolve.parse_manifest`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.manage import MAX_OPERATIONS, parse_operations
from gateway.resolve import ManifestEntry, parse_manifest
from gateway.token_routes import _token_request
from gateway.upload_parsing import MAX_FILES, UploadRequest, parse_upload
from indexer.digests import is_valid_digest
from indexer.schema import VISIBILITIES

DIGEST = st.text(alphabet="0123456789abcdef", min_size=128, max_size=128)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["sha512", "public", "internal", "set_visibility", "delete_instances"])
)
KEYS = ["message", "files", "author", "size", "digest", "algorithm", "visibility"]
KEYS += ["op", "reason", "scopes", "expires_in"]
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.sampled_from(KEYS), children, max_size=4)
    ),
    max_leaves=20,
)
# Near-valid upload entries: each field right or wrong.
entries = st.fixed_dictionaries(
    {},
    optional={
        "size": st.integers(-2, 6 * 1024**3) | scalars,
        "digest": DIGEST | scalars,
        "algorithm": st.just("sha512") | scalars,
        "visibility": st.sampled_from(VISIBILITIES) | scalars,
        "extra": scalars,
    },
)
uploads = st.fixed_dictionaries(
    {},
    optional={
        "message": st.text(max_size=30) | scalars,
        "files": st.dictionaries(st.text(max_size=12), entries | json_values, max_size=4)
        | json_values,
        "author": scalars,
    },
)
raw_bodies = (
    st.binary(max_size=200)
    | json_values.map(lambda value: json.dumps(value).encode())
    | uploads.map(lambda value: json.dumps(value).encode())
    | st.text(max_size=100).map(lambda text: text.encode("utf-8", "surrogatepass"))
    | st.sampled_from([b'{"message": "\\udfff"}', b"NaN", b"[" * 5000, b'{"a": 1e999}'])
)


def parsed_or_refused(parse: Callable[[bytes], Any], body: bytes) -> Any:
    """What `parse` makes of `body`, or None for a 400 problem; anything else fails."""
    try:
        return parse(body)
    except BadRequest as exc:
        refusal = exc
    assert refusal.status == 400
    assert refusal.detail
    return None


@settings(max_examples=300, deadline=None, database=None)
@given(body=raw_bodies)
def test_an_upload_body_is_a_valid_batch_or_a_400(body: bytes) -> None:
    upload = parsed_or_refused(parse_upload, body)
    if upload is None:
        return
    assert isinstance(upload, UploadRequest)
    assert upload.message.strip()
    assert 1 <= len(upload.files) <= MAX_FILES
    for name, entry in upload.files.items():
        assert name
        assert not {"/", "\\"} & set(name)
        assert is_valid_digest(entry.digest)
        assert isinstance(entry.size, int)
        assert entry.size >= 0
        assert entry.visibility in VISIBILITIES
        assert entry.algorithm == "sha512"


@settings(max_examples=100, deadline=None, database=None)
@given(
    message=st.text(
        st.characters(blacklist_categories=["Cc", "Cs"]) | st.sampled_from("\t\n"),
        min_size=1,
        max_size=50,
    ).filter(str.strip),
    files=st.dictionaries(
        st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True).filter(
            lambda name: name not in (".", "..")
        ),
        st.builds(
            lambda size, digest, visibility: {
                "size": size,
                "digest": digest,
                "algorithm": "sha512",
                "visibility": visibility,
            },
            st.integers(0, 5 * 1024**3),
            DIGEST,
            st.sampled_from(VISIBILITIES),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_a_well_formed_batch_is_parsed_as_sent(message: str, files: dict[str, Any]) -> None:
    body = json.dumps({"message": message, "files": files}).encode()
    upload = parse_upload(body)
    assert upload.message == message
    assert {name: entry.size for name, entry in upload.files.items()} == {
        name: entry["size"] for name, entry in files.items()
    }


@settings(max_examples=300, deadline=None, database=None)
@given(body=raw_bodies)
def test_patch_and_token_bodies_are_parsed_or_a_400(body: bytes) -> None:
    operations = parsed_or_refused(parse_operations, body)
    assert operations is None or 1 <= len(operations) <= MAX_OPERATIONS
    token_request = parsed_or_refused(_token_request, body)
    if token_request is not None:
        scopes, expires_in = token_request
        assert scopes is None or all(isinstance(scope, str) for scope in scopes)
        assert expires_in is None or (type(expires_in) is int and expires_in > 0)


@settings(max_examples=300, deadline=None, database=None)
@given(
    body=raw_bodies
    | st.lists(entries | json_values, max_size=4).map(lambda v: json.dumps(v).encode())
)
def test_a_resolve_body_is_a_manifest_or_a_400(body: bytes) -> None:
    manifest = parsed_or_refused(parse_manifest, body)
    if manifest is None:
        return
    sent = json.loads(body)
    assert manifest == [
        ManifestEntry(entry["digest"], entry.get("algorithm", "sha512") == "sha512")
        for entry in sent
    ]
    assert all(isinstance(entry.digest, str) for entry in manifest)
