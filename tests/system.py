"""A whole ToolTool over one kind of store, driven as clients drive it.

`System.upload` does what the legacy ``tooltool.py upload`` does: POST the
batch (Hawk-signed, payload hashed as application/json), PUT each file to its
``put_url`` with only Content-Type and Content-Length (http.client, host and
port from the URL, 200 required), then GET ``upload/complete/sha512/<d>``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.testclient import TestClient

from indexer.job import Indexer
from indexer.stores import Regions
from tests.gateway.auth_helpers import hawk

BASE = "http://testserver:80"


@dataclass
class Uploaded:
    """One file of a posted batch."""

    name: str
    data: bytes
    visibility: str

    @property
    def digest(self) -> str:
        return hashlib.sha512(self.data).hexdigest()

    def entry(self) -> dict[str, Any]:
        return {
            "size": len(self.data),
            "digest": self.digest,
            "algorithm": "sha512",
            "visibility": self.visibility,
        }


@dataclass
class System:
    client: TestClient
    regions: Regions
    indexer: Indexer
    statuses: list[int] = field(default_factory=list)

    def post(
        self,
        files: list[Uploaded],
        *,
        client_id: str = "uploader",
        message: str = "m",
        query: str = "",
    ) -> Any:
        body = json.dumps({"message": message, "files": {f.name: f.entry() for f in files}})
        url = f"{BASE}/upload{query}"
        return self.client.post(
            f"/upload{query}",
            content=body.encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": hawk(
                    client_id, url, "POST", body=body.encode(), content_type="application/json"
                ),
            },
        )

    def put(self, url: str, data: bytes, *, length: int | None = None) -> int:
        """A PUT as the legacy client sends it (for local-store URLs, through the TestClient)."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(data) if length is None else length),
        }
        parts = urlsplit(url)
        if parts.hostname == "testserver":
            return self.client.put(
                f"{parts.path}?{parts.query}", content=data, headers=headers
            ).status_code
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request("PUT", f"{parts.path}?{parts.query}", body=data, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def redirect(
        self, digest: str, *, client_id: str | None = None, region: str | None = None
    ) -> Any:
        """The answer to GET /sha512/<digest> (with `?region=`), not followed."""
        path = f"/sha512/{digest}"
        query = "" if region is None else f"?region={region}"
        headers = {"Authorization": hawk(client_id, BASE + path + query)} if client_id else {}
        return self.client.get(path + query, headers=headers)

    def complete(self, digest: str, *, client_id: str = "uploader") -> Any:
        path = f"/upload/complete/sha512/{digest}"
        return self.client.get(path, headers={"Authorization": hawk(client_id, BASE + path)})

    def upload(self, files: list[Uploaded], **options: Any) -> dict[str, Any]:
        """POST, PUT every file that gets a put_url, report completion; the batch's result."""
        response = self.post(files, **options)
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        data = {f.name: f.data for f in files}
        for name, entry in result["files"].items():
            if "put_url" in entry:
                assert self.put(entry["put_url"], data[name]) == 200
                assert self.complete(entry["digest"]).status_code == 202
        return result

    def download(
        self, digest: str, *, client_id: str | None = None, region: str | None = None
    ) -> tuple[int, bytes]:
        """GET /sha512/<digest> (with `?region=`), following a 302: its status and bytes."""
        response = self.redirect(digest, client_id=client_id, region=region)
        if response.status_code != 302:
            return response.status_code, b""
        location = urlsplit(response.headers["location"])
        if location.hostname == "testserver":
            fetched = self.client.get(f"{location.path}?{location.query}")
            return 302, fetched.content
        import urllib.request

        with urllib.request.urlopen(response.headers["location"], timeout=30) as answer:
            return 302, answer.read()
