"""The tooltool server's API as the client uses it: resolving digests to signed URLs,
uploads, file operations and tokens. One :class:`Server` per base URL."""

from __future__ import annotations

import json
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

from tooltool_client.credentials import Credentials
from tooltool_client.errors import ProblemAnswer, ServerError, shown
from tooltool_client.transport import Transport

REDIRECTS = (301, 302, 303, 307, 308)
# A server without the batch-resolve endpoint (the legacy service) answers these.
_NO_RESOLVE = (404, 405, 501)


@dataclass(frozen=True)
class Location:
    """Where a file's bytes are: a signed URL (no credentials), or the server itself."""

    url: str
    needs_credentials: bool = False


class Server:
    """One tooltool server, by its base URL (ending with ``/``)."""

    def __init__(self, base_url: str, credentials: Credentials, transport: Transport) -> None:
        self.base_url = base_url
        self._credentials = credentials
        self._transport = transport

    def __repr__(self) -> str:
        return f"Server({self.base_url!r})"

    def url(self, path: str, region: str | None = None) -> str:
        url = urljoin(self.base_url, path)
        if region is not None:
            url += "?region=" + quote(region, safe="")
        return url

    def auth_headers(self, method: str, url: str, body: bytes | None = None) -> dict[str, str]:
        header = self._credentials.header(method, url, body)
        return {} if header is None else {"Authorization": header}

    def call(
        self,
        method: str,
        path: str,
        *,
        data: Any = None,
        region: str | None = None,
        unread: Container[int] = (),
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request to the server, credentials attached, the answer whole (but for the
        statuses in `unread`: see :meth:`Transport.request`)."""
        url = self.url(path, region)
        body = None if data is None else json.dumps(data).encode("utf-8")
        headers = self.auth_headers(method, url, body)
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self._transport.request(method, url, headers=headers, body=body, unread=unread)

    def locate(self, digest: str, region: str | None = None) -> Location:
        """``GET sha512/<digest>`` without following the redirect: the signed URL."""
        path = "sha512/" + digest
        # A 200 is the file itself (a plain mirror), of any size: downloaded, and resumed,
        # from the same URL, not read here.
        status, headers, body = self.call("GET", path, region=region, unread=(200,))
        if status in REDIRECTS and headers.get("Location"):
            return Location(urljoin(self.url(path), headers["Location"]))
        if status == 200:  # a server that answers the bytes itself
            return Location(self.url(path, region), needs_credentials=True)
        raise problem(status, body)

    def resolve(
        self, digests: Sequence[str], region: str | None = None
    ) -> list[Location | ProblemAnswer] | None:
        """``POST resolve``: every digest's signed URL or problem in one request; None
        when the server has no such endpoint."""
        manifest = [{"digest": digest, "algorithm": "sha512"} for digest in digests]
        status, _, body = self.call("POST", "resolve", data=manifest, region=region)
        if status in _NO_RESOLVE:
            return None
        if status != 200:
            raise problem(status, body)
        try:
            files = json.loads(body)["files"]
            if not isinstance(files, list) or len(files) != len(digests):
                raise ValueError
            return [
                _resolution(entry, digest) for entry, digest in zip(files, digests, strict=True)
            ]
        except (ValueError, KeyError, TypeError, RecursionError):  # nested too deep: no JSON
            raise ServerError(f"{self.base_url}resolve answered something unexpected") from None


def _resolution(entry: Any, digest: str) -> Location | ProblemAnswer:
    if not isinstance(entry, dict) or entry.get("digest") != digest:
        raise ValueError
    if isinstance(entry.get("url"), str):
        return Location(entry["url"])
    found = entry.get("problem")
    if not isinstance(found, dict) or not isinstance(found.get("status"), int):
        raise ValueError
    return ProblemAnswer(found["status"], _detail(found))


def problem(status: int, body: bytes) -> ProblemAnswer:
    """The server's refusal, with the detail of a problem-JSON body when there is one."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # nested too deep for the parser: no problem JSON
        parsed = None
    return ProblemAnswer(status, _detail(parsed) if isinstance(parsed, dict) else "")


def _detail(body: Mapping[str, Any]) -> str:
    error = body.get("error")
    for value in (
        body.get("detail"),
        error.get("description") if isinstance(error, dict) else None,
    ):
        if isinstance(value, str):
            return shown(value)
    return ""
