"""Digest parsing: exactly 128 lowercase hex characters, nothing else, in code and over HTTP."""

from __future__ import annotations

import string
from urllib.parse import quote

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from indexer.digests import is_valid_digest
from tests.gateway.conftest import Gateway

HEX = "0123456789abcdef"


def oracle(value: str) -> bool:
    """An independent statement of the rule: no regular expression, no library."""
    return len(value) == 128 and all(character in HEX for character in value)


valid = st.text(alphabet=HEX, min_size=128, max_size=128)
# Near misses: valid digests with one character changed, inserted or removed, or with
# whitespace, a newline, an uppercase letter or a non-ASCII digit or letter added.
edits = st.sampled_from(
    ["\n", "\r\n", " ", "\t", "\x00", "A", "F", "g", "\u0663", "\uff10", "\uff41"]
)


@st.composite
def near_misses(draw: st.DrawFn) -> str:
    digest = draw(valid)
    position = draw(st.integers(0, 128))
    edit = draw(edits | st.characters())
    how = draw(st.sampled_from(["insert", "replace", "delete", "append", "prepend"]))
    if how == "insert":
        return digest[:position] + edit + digest[position:]
    if how == "replace":
        return digest[:position] + edit + digest[position + 1 :]
    if how == "delete":
        return digest[:position] + digest[position + 1 :]
    if how == "append":
        return digest + edit
    return edit + digest


candidates = (
    valid
    | near_misses()
    | st.text(alphabet=HEX + string.ascii_uppercase + "\n", min_size=126, max_size=130)
    | st.text(max_size=300)
)


@settings(max_examples=500, deadline=None, database=None)
@given(value=candidates)
def test_only_128_lowercase_hex_characters_are_a_digest(value: str) -> None:
    assert is_valid_digest(value) == oracle(value)


def test_the_gateway_answers_400_exactly_for_what_is_not_a_digest(gateway: Gateway) -> None:
    client: TestClient = gateway.client()

    @settings(max_examples=150, deadline=None, database=None)
    @given(value=candidates)
    def check(value: str) -> None:
        # "." and ".." are dot segments: clients resolve them away before sending (RFC 3986).
        assume(value not in (".", ".."))
        for path in ("/sha512/", "/file/sha512/", "/upload/complete/sha512/"):
            answer = client.get(path + quote(value, safe=""))
            if oracle(value):
                assert answer.status_code in (401, 404), (path, value)
            else:
                assert answer.status_code == 400, (path, value)
                assert answer.json()["detail"] == "Invalid sha512 digest"

    check()
