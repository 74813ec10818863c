"""Hawk Authorization headers: any text is parsed or cleanly refused; headers made by
mohawk (never by the gateway's own code) parse as sent, verify, and fail once tampered."""

from __future__ import annotations

import string

import mohawk
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.hawk import HawkError, HawkRequest, HawkVerifier, parse_header

NOW = 1_800_000_000
# What the Hawk specification lets a header value hold: printable ASCII but quote and backslash.
VALUE_CHARS = "".join(c for c in string.printable if c not in '"\\\t\n\r\x0b\x0c')
KEYS = ["id", "ts", "nonce", "mac", "hash", "ext", "app", "dlg"]

attributes = st.lists(
    st.tuples(
        st.sampled_from(KEYS) | st.text(max_size=6),
        st.text(max_size=30) | st.text(VALUE_CHARS, max_size=30),
    ),
    max_size=9,
)


@st.composite
def headers(draw: st.DrawFn) -> str:
    """Hawk-like headers: the scheme in any case, attributes right or wrong, odd separators."""
    scheme = draw(st.sampled_from(["Hawk", "hawk", "HAWK", "Bearer", "", "Hawk\t"]))
    separator = draw(st.sampled_from([", ", ",", " , ", " ", ",,", ";"]))
    quote = draw(st.sampled_from(['"', "'", ""]))
    parts = [f"{key}={quote}{value}{quote}" for key, value in draw(attributes)]
    return f"{scheme} {separator.join(parts)}"


@settings(max_examples=500, deadline=None, database=None)
@given(header=headers() | st.text(max_size=200) | st.text(max_size=5000, alphabet=VALUE_CHARS))
def test_any_header_is_parsed_or_refused_with_a_hawk_error(header: str) -> None:
    try:
        parsed = parse_header(header)
    except HawkError:
        return
    assert header.split(" ", 1)[0].lower() == "hawk"
    for value in (parsed.id, parsed.ts, parsed.nonce, parsed.mac):
        assert value
        assert set(value) <= set(VALUE_CHARS)
    assert len(parsed.nonce) <= 128


sender_values = st.text(VALUE_CHARS, min_size=1, max_size=40).filter(lambda v: v.strip() == v)
requests = st.fixed_dictionaries(
    {
        "client_id": sender_values,
        "access_token": st.text(VALUE_CHARS, min_size=1, max_size=40),
        "method": st.sampled_from(["GET", "POST", "PATCH", "PUT"]),
        "path": st.from_regex(r"/[a-z0-9/._-]{0,40}", fullmatch=True),
        "query": st.from_regex(r"(\?[a-z0-9=&%]{1,20})?", fullmatch=True),
        "port": st.integers(1, 65535),
        "body": st.none() | st.binary(max_size=100),
        "ext": st.none() | sender_values,
        "nonce": sender_values.filter(lambda n: len(n) <= 128),
    }
)


def signed(request: dict[str, object]) -> tuple[str, HawkRequest]:
    """The header mohawk sends for `request`, and the request as the gateway sees it."""
    url = f"http://tooltool.example:{request['port']}{request['path']}{request['query']}"
    body = request["body"]
    content_type = "application/json" if body is not None else ""
    header = mohawk.Sender(
        {"id": request["client_id"], "key": request["access_token"], "algorithm": "sha256"},
        url,
        request["method"],
        content=body if body is not None else "",
        content_type=content_type,
        always_hash_content=body is not None,
        ext=request["ext"],
        nonce=request["nonce"],
        _timestamp=str(NOW),
    ).request_header
    return header, HawkRequest(
        method=str(request["method"]),
        resource=f"{request['path']}{request['query']}",
        host="tooltool.example",
        port=int(str(request["port"])),
        authorization=header,
        content_type=content_type or None,
        body=body if isinstance(body, bytes) else None,
    )


def verify(hawk: HawkRequest, client_id: str, access_token: str) -> str:
    verifier = HawkVerifier(skew=60, clock=lambda: NOW)
    return verifier.verify(hawk, {client_id: access_token}.get)


@settings(max_examples=200, deadline=None, database=None)
@given(request=requests)
def test_mohawk_headers_parse_as_sent_and_verify(request: dict[str, object]) -> None:
    header, hawk = signed(request)
    parsed = parse_header(header)
    assert (parsed.id, parsed.ts, parsed.nonce, parsed.ext) == (
        request["client_id"],
        str(NOW),
        request["nonce"],
        request["ext"],
    )
    assert verify(hawk, str(request["client_id"]), str(request["access_token"])) == parsed.id


tampering = st.sampled_from(["method", "resource", "host", "port", "body", "mac", "token", "ts"])


@settings(max_examples=300, deadline=None, database=None)
@given(request=requests, what=tampering, junk=st.text(VALUE_CHARS, min_size=1, max_size=5))
def test_a_tampered_request_is_refused(request: dict[str, object], what: str, junk: str) -> None:
    header, hawk = signed(request)
    token = str(request["access_token"])
    changes: dict[str, object] = {
        "method": {"method": "DELETE"},
        "resource": {"resource": hawk.resource + "/" + junk},
        "host": {"host": "other.example"},
        "port": {"port": hawk.port % 65535 + 1},
        "body": {"body": (hawk.body or b"") + junk.encode()},
        "mac": {"authorization": header.replace('mac="', f'mac="{junk}', 1)},
        "ts": {"authorization": header.replace(f'ts="{NOW}"', f'ts="{NOW + 1}"', 1)},
    }
    if what == "token":
        token += junk
    else:
        hawk = HawkRequest(**{**_fields(hawk), **changes[what]})  # type: ignore[arg-type]
    try:
        verify(hawk, str(request["client_id"]), token)
    except HawkError:
        return
    raise AssertionError(f"a request with its {what} changed was accepted")


def _fields(hawk: HawkRequest) -> dict[str, object]:
    return {name: getattr(hawk, name) for name in HawkRequest.__slots__}


@settings(max_examples=100, deadline=None, database=None)
@given(request=requests)
def test_a_replayed_nonce_is_refused(request: dict[str, object]) -> None:
    _, hawk = signed(request)
    verifier = HawkVerifier(skew=60, clock=lambda: NOW)
    tokens = {str(request["client_id"]): str(request["access_token"])}.get
    verifier.verify(hawk, tokens)
    try:
        verifier.verify(hawk, tokens)
    except HawkError:
        return
    raise AssertionError("a replayed request was accepted")
