"""The soak's mixed load: what each connection sends, and what it must get back.

Each connection sends one operation after another from a fixed mix (shuffled once,
every connection starting at its own place in it), until the deadline or the request
budget. An operation is one to three requests; each request has exactly one status it
must answer, and some a body to check (the bytes behind a signed URL, a search's hits,
a PATCH's visibility). Anything else — another status, a connection cut, no answer
within the timeout — is an error of that request's kind, counted and sampled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import statistics
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from soak_http import Answer, Connection, HTTPError

from indexer.redaction import redact
from tests.gateway.auth_helpers import basic, hawk

# Two lanes of connections, each sending its mix (operations per round) as fast as
# its answers come: reads (downloads, tokens, searches: what production sees most) and
# writes (uploads and PATCHes, which wait on the store's conditional writes). A slow
# write holds only its own lane's connection, never a download's.
MIXES = {
    "read": {
        "download_public": 600,
        "download_internal": 240,
        "refuse_internal": 40,
        "fetch_public": 40,
        "token_basic": 20,
        "token_hawk": 20,
        "search_files": 20,
        "search_uploads": 20,
        "heartbeat": 2,
    },
    "write": {"upload": 1, "patch": 1},
}
MAX_ERROR_SAMPLES = 20
COMPLETED = "upload: complete (202)"


@dataclass
class Seeded:
    """What the store held before the load, and the tokens it starts with."""

    public: list[str]  # digests
    internal: list[str]
    flips: list[str]  # public files only PATCHes touch
    batches: list[str]  # messages of the seeded batches
    credentials: dict[str, str]  # client id -> access token
    tokens: dict[str, str]  # client id -> a Bearer token, refreshed by the token exchanges


@dataclass
class Recorder:
    """Every request's kind, latency and verdict."""

    latencies: dict[str, array[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(len(values) for values in self.latencies.values())

    def record(self, kind: str, seconds: float, error: str | None = None) -> None:
        self.latencies.setdefault(kind, array("d")).append(seconds)
        if error is not None:
            self.errors[kind] += 1
            if len(self.samples) < MAX_ERROR_SAMPLES:  # a body may hold a signed URL
                self.samples.append(redact(f"{kind}: {error}"[:300]))

    def summary(self, seconds: float) -> dict[str, Any]:
        """Per kind: count, rate, p50 and p99 (ms), errors; and the totals."""
        every = array("d")
        for values in self.latencies.values():
            every.extend(values)
        kinds = {
            kind: {**_figures(values, seconds), "errors": self.errors[kind]}
            for kind, values in sorted(self.latencies.items())
        }
        return {
            **_figures(every, seconds),
            "errors": sum(self.errors.values()),
            "error_samples": self.samples,
            "kinds": kinds,
        }


def _figures(values: array[float], seconds: float) -> dict[str, Any]:
    """Count, rate, p50 and p99 (ms) of these latencies over `seconds`."""
    quantiles = statistics.quantiles(values, n=100) if len(values) > 1 else [0.0] * 99
    return {
        "requests": len(values),
        "rate": round(len(values) / seconds, 1),
        "p50_ms": round(quantiles[49] * 1000, 2),
        "p99_ms": round(quantiles[98] * 1000, 2),
    }


def schedule(mix: dict[str, int], seed: int = 11) -> list[str]:
    """`mix` as a sequence of operations, shuffled once."""
    operations = [name for name, share in mix.items() for _ in range(share)]
    random.Random(seed).shuffle(operations)  # noqa: S311 (a mix, not a secret)
    return operations


async def run_load(
    replicas: Sequence[str],
    seeded: Seeded,
    *,
    lanes: dict[str, int],
    seconds: float,
    max_requests: int,
) -> tuple[Recorder, float]:
    """`lanes[name]` connections sending MIXES[name], spread over `replicas`, for
    `seconds` or until `max_requests` answers; what they recorded and how long it took."""
    recorder = Recorder()
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    def is_over() -> bool:
        return time.monotonic() >= deadline or recorder.requests >= max_requests

    runs = []
    for lane, connections in lanes.items():
        operations = schedule(MIXES[lane])
        for number in range(connections):
            replica = replicas[number % len(replicas)]
            client = Client(replica, seeded, recorder, f"{lane}-{number}")
            start = number * len(operations) // connections
            runs.append(client.run(operations, start=start, until=is_over))
    await asyncio.gather(*runs)
    return recorder, time.monotonic() - started


class Client:
    """One connection to one replica (and one to the store, for signed URLs)."""

    def __init__(self, replica: str, seeded: Seeded, recorder: Recorder, name: str) -> None:
        parts = urlsplit(replica)
        self._base = replica
        self._gateway = Connection(parts.hostname or "", parts.port or 80)
        self._store: Connection | None = None
        self._seeded = seeded
        self._recorder = recorder
        self._name = name
        self._random = random.Random(name)  # noqa: S311 (a mix, not a secret)
        self._uploads = 0
        # Each writer uploads as a client of its own, as jobs do (the gateway takes one
        # batch at a time per caller).
        self._uploader = f"soak-{name}"
        self._roles = sorted(seeded.credentials)

    async def run(
        self, operations: Sequence[str], *, start: int, until: Callable[[], bool]
    ) -> None:
        index = start
        try:
            while not until():
                await getattr(self, operations[index % len(operations)])()
                index += 1
        finally:
            self._gateway.close()
            if self._store is not None:
                self._store.close()

    # -- the operations ---------------------------------------------------------------

    async def download_public(self) -> None:
        digest = self._random.choice(self._seeded.public)
        await self._call("download public (anonymous, 302)", f"/sha512/{digest}", 302)

    async def download_internal(self) -> None:
        digest = self._random.choice(self._seeded.internal)
        headers = self._bearer("reader")
        await self._call("download internal (Bearer, 302)", f"/sha512/{digest}", 302, headers)

    async def refuse_internal(self) -> None:
        digest = self._random.choice(self._seeded.internal)
        await self._call("download internal (anonymous, 403)", f"/sha512/{digest}", 403)

    async def fetch_public(self) -> None:
        digest = self._random.choice(self._seeded.public)
        answer = await self._call("download public (anonymous, 302)", f"/sha512/{digest}", 302)
        if answer is None:
            return
        await self._on_store(
            "signed URL (GET from S3, 200)",
            "GET",
            answer.headers.get("location", ""),
            200,
            check=lambda body: (
                None
                if hashlib.sha512(body).hexdigest() == digest
                else f"{len(body)} bytes of another sha512"
            ),
        )

    async def token_basic(self) -> None:
        role = self._random.choice(self._roles)
        secret = self._seeded.credentials[role]
        await self._token("token (Basic, 200)", role, basic(role, secret))

    async def token_hawk(self) -> None:
        role = self._random.choice(self._roles)
        secret = self._seeded.credentials[role]
        url = f"{self._base}/token"
        await self._token("token (Hawk, 200)", role, hawk(role, url, "POST", access_token=secret))

    async def search_files(self) -> None:
        prefix = self._random.choice(self._seeded.public)[:8]
        await self._search("search files (200)", f"/file?q={prefix}")

    async def search_uploads(self) -> None:
        message = self._random.choice(self._seeded.batches)
        await self._search("search uploads (200)", f"/upload?q={quote(message)}")

    async def patch(self) -> None:
        digest = self._random.choice(self._seeded.flips)
        visibility = self._random.choice(("public", "internal"))
        body = json.dumps([{"op": "set_visibility", "visibility": visibility}]).encode()
        await self._call(
            "PATCH visibility (200)",
            f"/file/sha512/{digest}",
            200,
            {**self._bearer("admin"), "Content-Type": "application/json"},
            method="PATCH",
            body=body,
            check=lambda answer: (
                None
                if json.loads(answer)["visibility"] == visibility
                else "the visibility asked for is not the one answered"
            ),
        )

    async def upload(self) -> None:
        """POST the batch, PUT the bytes to the signed URL, report the upload complete."""
        self._uploads += 1
        data = os.urandom(self._random.randrange(1024, 8192))
        digest = hashlib.sha512(data).hexdigest()
        name = f"soak-{self._name}-{self._uploads}.bin"
        visibility = ("public", "internal")[self._uploads % 2]
        entry = {"size": len(data), "digest": digest, "algorithm": "sha512"}
        batch = {
            "message": f"soak upload {name}",
            "files": {name: {**entry, "visibility": visibility}},
        }
        answer = await self._call(
            "upload: POST /upload (200)",
            "/upload",
            200,
            {**self._bearer(self._uploader), "Content-Type": "application/json"},
            method="POST",
            body=json.dumps(batch).encode(),
        )
        if answer is None:
            return
        put_url = json.loads(answer.body)["result"]["files"][name].get("put_url")
        if put_url is None:
            self._recorder.record("upload: POST /upload (200)", 0.0, "no put_url for new bytes")
            return
        headers = {"Content-Type": "application/octet-stream"}
        if await self._on_store("upload: PUT to S3 (200)", "PUT", put_url, 200, headers, data):
            await self._call(
                COMPLETED,
                f"/upload/complete/sha512/{digest}",
                202,
                self._bearer(self._uploader),
            )

    async def heartbeat(self) -> None:
        await self._call("heartbeat (200)", "/__heartbeat__", 200)

    # -- requests -----------------------------------------------------------------------

    def _bearer(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._seeded.tokens[role]}"}

    async def _search(self, kind: str, target: str) -> None:
        """A search that must find something: the seeded files and batches."""
        headers = self._bearer("reader")
        await self._call(kind, target, 200, headers, check=_has_results)

    async def _token(self, kind: str, role: str, authorization: str) -> None:
        answer = await self._call(
            kind, "/token", 200, {"Authorization": authorization}, method="POST"
        )
        if answer is not None:
            self._seeded.tokens[role] = json.loads(answer.body)["token"]

    async def _call(
        self,
        kind: str,
        target: str,
        status: int,
        headers: dict[str, str] | None = None,
        *,
        method: str = "GET",
        body: bytes = b"",
        check: Callable[[bytes], str | None] = lambda body: None,
    ) -> Answer | None:
        """One request to the gateway: its answer, or None (an error, recorded)."""
        return await self._timed(kind, self._gateway, method, target, status, headers, body, check)

    async def _on_store(
        self,
        kind: str,
        method: str,
        url: str,
        status: int,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        check: Callable[[bytes], str | None] = lambda body: None,
    ) -> Answer | None:
        """One request to a signed URL, on this client's connection to the store."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            self._recorder.record(kind, 0.0, f"not a signed http URL: {url[:80]!r}")
            return None
        address = (parts.hostname, parts.port or 80)
        if self._store is None or (self._store.host, self._store.port) != address:
            if self._store is not None:
                self._store.close()
            self._store = Connection(*address)
        target = f"{parts.path}?{parts.query}"
        return await self._timed(kind, self._store, method, target, status, headers, body, check)

    async def _timed(
        self,
        kind: str,
        connection: Connection,
        method: str,
        target: str,
        status: int,
        headers: dict[str, str] | None,
        body: bytes,
        check: Callable[[bytes], str | None],
    ) -> Answer | None:
        started = time.perf_counter()
        try:
            answer = await connection.request(method, target, headers, body)
        except HTTPError as exc:
            self._recorder.record(kind, time.perf_counter() - started, str(exc))
            return None
        seconds = time.perf_counter() - started
        if answer.status != status:
            error: str | None = f"{answer.status}: {answer.body[:200]!r}"
        else:
            try:
                error = check(answer.body)
            except (ValueError, KeyError, TypeError) as exc:
                error = f"an answer that does not parse: {type(exc).__name__}: {exc}"
        self._recorder.record(kind, seconds, error)
        return answer if error is None else None


def _has_results(body: bytes) -> str | None:
    return None if json.loads(body)["result"] else "no result"
