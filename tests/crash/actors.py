"""The crash loop's clients, each a thread over the gateway's real HTTP: an uploader
(right, wrong and replaced bytes), a patcher (visibility changes, deletions) and a
watcher that downloads everything, all the time, and checks every byte served."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from typing import Any

from tests.crash.ledger import REPLACED, RIGHT, WRONG, File, Ledger
from tests.gateway.auth_helpers import hawk
from tests.test_end_to_end import request

CONFLICT = "Cannot change already existing file's visibility level."


class Gateway:
    """The calls the legacy client makes, Hawk-signed, to a gateway at `url`."""

    def __init__(self, url: str) -> None:
        self.url = url

    def post_batch(self, files: list[File], message: str) -> tuple[int, Any]:
        entries = {
            f"{file.digest[:12]}.bin": {
                "size": len(file.data),
                "digest": file.digest,
                "algorithm": "sha512",
                "visibility": file.visibility,
            }
            for file in files
        }
        body = json.dumps({"message": message, "files": entries}).encode()
        return self._json("POST", "/upload", "uploader", body)

    def complete(self, digest: str) -> int:
        path = f"/upload/complete/sha512/{digest}"
        headers = {"Authorization": hawk("uploader", self.url + path)}
        return request(self.url + path, headers=headers)[0]

    def patch(self, digest: str, operations: list[dict[str, str]]) -> tuple[int, Any]:
        return self._json(
            "PATCH", f"/file/sha512/{digest}", "admin", json.dumps(operations).encode()
        )

    def file(self, digest: str) -> tuple[int, Any]:
        path = f"/file/sha512/{digest}"
        status, _, body = request(
            self.url + path, headers={"Authorization": hawk("reader", self.url + path)}
        )
        return status, json.loads(body)

    def redirect(
        self, digest: str, client_id: str | None = None, region: str | None = None
    ) -> tuple[int, str]:
        """GET /sha512/<digest> (anonymous without `client_id`): the status and Location."""
        path = f"/sha512/{digest}" + ("" if region is None else f"?region={region}")
        headers = {"Authorization": hawk(client_id, self.url + path)} if client_id else {}
        status, answer, _ = request(self.url + path, headers=headers)
        return status, answer.get("Location", answer.get("location", ""))

    def _json(self, method: str, path: str, client_id: str, body: bytes) -> tuple[int, Any]:
        headers = {
            "Content-Type": "application/json",
            "Authorization": hawk(
                client_id, self.url + path, method, body=body, content_type="application/json"
            ),
        }
        status, _, answer = request(self.url + path, method, headers, body)
        return status, json.loads(answer)


def put(url: str, data: bytes) -> int:
    """A PUT to a signed URL as the legacy client sends it."""
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
    return request(url, "PUT", headers, data)[0]


def fetch(location: str) -> tuple[int, bytes]:
    """GET a signed download URL: its status and bytes."""
    status, _, body = request(location)
    return status, body


def other_bytes(data: bytes) -> bytes:
    """Bytes of the same size (a signed PUT carries it) that are not `data`."""
    return bytes([data[0] ^ 0xFF]) + data[1:]


class Actor(threading.Thread):
    """A client looping until stopped; anything it did not expect goes into the ledger."""

    def __init__(self, name: str, gateway: Gateway, ledger: Ledger, rng: random.Random) -> None:
        super().__init__(name=name, daemon=True)
        self.gateway = gateway
        self.ledger = ledger
        self.rng = rng
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception as exc:  # the loop goes on; the test fails at the end
                self.ledger.problem(f"{self.name}: {type(exc).__name__}: {exc}")

    def step(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)
        assert not self.is_alive(), f"{self.name} did not stop"


class Uploader(Actor):
    """Posts batches of one or two new files (now and then one already stored), PUTs
    the right bytes, other bytes, or the right then other bytes, reports completion."""

    def step(self) -> None:
        files = [self._new_file() for _ in range(self.rng.randint(1, 2))]
        known = self.ledger.to_post_again(self.rng) if self.rng.random() < 0.2 else None
        if known is not None:
            files.append(known)  # an arrival of a file already declared
        status, answer = self.gateway.post_batch(files, f"batch of {len(files)}")
        self.ledger.count("batches")
        if status == 400 and known is not None and answer["detail"] == CONFLICT:
            self.ledger.count("batches_refused")  # a PATCH changed its visibility meanwhile
            return
        if status != 200:
            self.ledger.problem(f"POST /upload answered {status}: {answer}")
            return
        by_digest = {file.digest: file for file in files}
        for entry in answer["result"]["files"].values():
            file = by_digest[entry["digest"]]
            self.ledger.add(file)
            if "put_url" in entry:
                self._send(file, entry["put_url"])
        # About a file every three seconds: what an indexer killed this often gets through.
        self.stopping.wait(self.rng.uniform(2.0, 4.0))

    def _new_file(self) -> File:
        size = self.rng.randint(1, 64 * 1024)
        data = self.rng.randbytes(size)
        visibility = self.rng.choice(["public", "public", "internal"])
        kind = self.rng.choices([RIGHT, WRONG, REPLACED], weights=[8, 1, 1])[0]
        return File(data, visibility, kind, maybe_public=visibility == "public")

    def _send(self, file: File, url: str) -> None:
        bodies = {
            RIGHT: [file.data],
            WRONG: [other_bytes(file.data)],
            REPLACED: [file.data, other_bytes(file.data)],
        }[file.kind]
        for body in bodies:
            status = put(url, body)
            if status != 200:
                self.ledger.problem(f"PUT of {file.digest[:16]} answered {status}")
        status = self.gateway.complete(file.digest)
        if status != 202:
            self.ledger.problem(f"upload/complete of {file.digest[:16]} answered {status}")
        self.ledger.count("uploads")
        self.ledger.count(f"uploads_{file.kind}")


class Patcher(Actor):
    """Changes the visibility of files uploaded with the right bytes, and deletes some."""

    def step(self) -> None:
        self.stopping.wait(self.rng.uniform(0.5, 1.5))
        candidates = [f for f in self.ledger.snapshot() if f.kind == RIGHT and not f.deleted]
        if not candidates:
            return
        file = self.rng.choice(candidates)
        if self.rng.random() < 0.15 and self.ledger.to_delete(file):
            operation = {"op": "delete_instances", "reason": "crash loop"}
        else:
            visibility = self.rng.choice(["public", "internal"])
            operation = {"op": "set_visibility", "visibility": visibility}
            if visibility == "public":
                self.ledger.may_go_public(file)  # before the request: downloads may follow
        status, answer = self.gateway.patch(file.digest, [operation])
        self.ledger.count("patches")
        if status == 200:
            self.ledger.patched(
                file,
                visibility=operation.get("visibility"),
                deleted=operation["op"] == "delete_instances",
            )
            self.ledger.count("patches_applied")
        elif status != 404:  # 404: not verified yet
            self.ledger.problem(f"PATCH of {file.digest[:16]} answered {status}: {answer}")


class Watcher(Actor):
    """Downloads every declared file in turn, anonymously and, when refused, as a reader:
    every byte served must hash to the digest asked for; a file never public is never
    served anonymously; a file deleted is not served at all."""

    def step(self) -> None:
        files = self.ledger.snapshot()
        if not files:
            self.stopping.wait(0.1)
        for file in files:
            if self.stopping.wait(0.05):  # the machine's cores are for the indexer too
                return
            self.check(file)

    def check(self, file: File) -> None:
        deleted_before = file.deleted
        status, location = self.gateway.redirect(file.digest)
        if status == 302 and not file.maybe_public:
            self.ledger.problem(f"internal {file.digest[:16]} served to an anonymous caller")
        if status == 403:
            status, location = self.gateway.redirect(file.digest, "reader")
        if status in (403, 404):
            return
        if status != 302:
            self.ledger.problem(f"GET /sha512/{file.digest[:16]} answered {status}")
            return
        if deleted_before:
            self.ledger.problem(f"deleted {file.digest[:16]} still served")
        served, data = fetch(location)
        if served == 404:
            return  # deleted between the redirect and the fetch
        self.ledger.count("downloads")
        if served != 200 or hashlib.sha512(data).hexdigest() != file.digest:
            self.ledger.count("mismatches")
            self.ledger.problem(f"{file.digest[:16]} served {served}, {len(data)} other bytes")
