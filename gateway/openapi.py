"""``GET /openapi.json``: an OpenAPI 3.1 description of every route the gateway serves.

Built here from the limits and names the routes themselves use (body sizes,
file counts, site sections, problem details), so the description cannot
drift from them; tests check it against the app's routes both ways, against
the OpenAPI 3.1 meta-schema, and against a running gateway with schemathesis.
It documents the legacy API's shapes as they are: it changes no behaviour.
The answer is built once per app, holds no secret and no configuration but
whether the local store's signed-URL routes exist.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway import resolve, token_routes, upload_parsing
from gateway.blobs import MAX_PUT_BYTES
from gateway.bodies import DEFAULT_LIMIT
from gateway.errors import DEFAULT_DETAILS
from gateway.manage import MAX_OPERATIONS
from gateway.site import SECTIONS
from indexer.management import MAX_REASON
from indexer.signing import STORE_ROUTE_PREFIX

PATH = "/openapi.json"
MAX_AGE = 300

Json = dict[str, Any]

_DIGEST: Json = {
    "type": "string",
    "pattern": "^[0-9a-f]{128}$",
    "description": "A sha512 digest: exactly 128 lowercase hex characters (a trailing"
    " newline included is a 400).",
}
_HAWK = (
    "Hawk (v1, sha256) as Taskcluster clients and the legacy tooltool.py send it:"
    ' `Authorization: Hawk id="…", ts="…", nonce="…", mac="…"[, hash="…"][, ext="…"]`;'
    " a request with a body must hash it."
)


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def _problem(status: int, description: str | None = None, headers: Json | None = None) -> Json:
    """A problem-JSON answer (:mod:`gateway.errors`)."""
    answer: Json = {
        "description": description or DEFAULT_DETAILS.get(status, "A problem"),
        "content": _json(_ref("Problem")),
    }
    if headers:
        answer["headers"] = headers
    return answer


def _header(description: str, *, required: bool = False, schema: Json | None = None) -> Json:
    return {
        "description": description,
        "required": required,
        "schema": schema or {"type": "string"},
    }


_RETRY_AFTER = _header("Seconds to wait before trying again", required=True)
_CHALLENGE = _header("The schemes accepted", required=True)


def _errors(*statuses: int) -> Json:
    """The problem answers of `statuses`, plus what any route may answer: 500 and 503."""
    answers: Json = {}
    for status in sorted({*statuses, 500, 503}):
        if status == 401:
            answers["401"] = _problem(
                401, "Credentials are missing or invalid", {"WWW-Authenticate": _CHALLENGE}
            )
        elif status in (429, 503, 507):
            answers[str(status)] = _problem(status, headers={"Retry-After": _RETRY_AFTER})
        else:
            answers[str(status)] = _problem(status)
    return answers


def _ok(schema: Json, description: str = "OK", status: str = "200") -> Json:
    return {status: {"description": description, "content": _json(schema)}}


def _path_parameter(name: str, schema: Json | None = None, description: str = "") -> Json:
    parameter: Json = {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema or {"type": "string"},
    }
    if description:
        parameter["description"] = description
    return parameter


# Single-line text (gateway.bodies.is_text): no C0 or C1 control characters, no DEL.
_LINE_TEXT = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
# ... holding something besides whitespace (what a search needs).
_SEARCH_TEXT = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f]"
    "[^\\u0000-\\u001f\\u007f-\\u009f]*$"
)
# Multi-line text: tab, newline and carriage return allowed too.
_TEXT = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"


def _query(
    name: str, description: str, schema: Json | None = None, *, required: bool = False
) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string", "maxLength": 256, "pattern": _LINE_TEXT},
    }


def _search(description: str) -> Json:
    """A required ``q``: short single-line text, not only whitespace (else a 400)."""
    schema = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": _SEARCH_TEXT}
    return _query("q", description, schema, required=True)


def _operation(summary: str, responses: Json, *, security: bool = True, **more: Any) -> Json:
    """An operation; with `security`, anonymous callers, Hawk and Bearer tokens alike."""
    operation: Json = {"summary": summary, **more, "responses": responses}
    if security:
        operation["security"] = [{}, {"hawk": []}, {"bearer": []}]
    return operation


def _schemas() -> Json:
    visibility = {"type": "string", "enum": ["public", "internal"]}
    algorithm = {"type": "string", "const": "sha512"}
    size = {
        "type": "integer",
        "minimum": 0,
        "maximum": upload_parsing.MAX_SIZE,
        "description": "Bytes, written as an integer (130, not 130.0 or 1.3e2), as the"
        " legacy client writes it.",
    }
    problem = {
        "type": "object",
        "description": "Every error: the legacy problem shape, with `error` for tooltool.py.",
        "required": ["detail", "instance", "status", "title", "type", "error"],
        "properties": {
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "status": {"type": "integer"},
            "title": {"type": "string"},
            "type": {"type": "string"},
            "error": {
                "type": "object",
                "required": ["name", "description"],
                "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
            },
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    file = {
        "type": "object",
        "required": ["size", "digest", "algorithm", "visibility", "has_instances", "instances"],
        "properties": {
            "size": size,
            "digest": _ref("Digest"),
            "algorithm": algorithm,
            "visibility": visibility,
            "has_instances": {"type": "boolean"},
            "instances": {"type": "array", "items": {"type": "string"}},
        },
    }
    return {
        "Digest": _DIGEST,
        "Problem": problem,
        "File": file,
        "FileSearch": _results(_ref("File")),
        **_batch_schemas(visibility, algorithm, size),
        **_resolve_schemas(),
        **_other_schemas(),
    }


def _results(item: Json) -> Json:
    return {
        "type": "object",
        "required": ["result"],
        "properties": {"result": {"type": "array", "items": item}},
    }


def _batch_schemas(visibility: Json, algorithm: Json, size: Json) -> Json:
    upload_file: Json = {
        "type": "object",
        "additionalProperties": False,
        "required": ["size", "digest", "algorithm", "visibility"],
        "properties": {
            "size": size,
            "digest": _ref("Digest"),
            "algorithm": algorithm,
            "visibility": visibility,
        },
    }
    batch_file = {
        "type": "object",
        "required": ["size", "digest", "algorithm", "visibility"],
        "properties": {
            **upload_file["properties"],
            "has_instances": {"type": "boolean"},
            "put_url": {
                "type": "string",
                "description": "Only for files the store lacks: PUT the bytes there with"
                " Content-Type application/octet-stream and the declared Content-Length.",
            },
        },
    }
    return {
        "UploadRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["message", "files"],
            "properties": {
                "message": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": upload_parsing.MAX_MESSAGE,
                    "pattern": _TEXT,
                    "description": "Text, not only whitespace: no control characters but"
                    " tab and newlines.",
                },
                "files": {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": upload_parsing.MAX_FILES,
                    "propertyNames": {
                        "minLength": 1,
                        "maxLength": upload_parsing.MAX_FILENAME,
                        "pattern": "^[^/\\\\\\u0000-\\u001f\\u007f-\\u009f]*$",
                        "not": {"enum": [".", ".."]},
                        "description": "A file name: printable, without / or \\.",
                    },
                    "additionalProperties": upload_file,
                },
            },
        },
        "Batch": {
            "type": "object",
            "required": ["id", "author", "uploaded", "message", "files"],
            "properties": {
                "id": {"type": "integer", "minimum": 0},
                "author": {"type": "string"},
                "uploaded": {"type": "string", "format": "date-time"},
                "message": {"type": "string"},
                "files": {"type": "object", "additionalProperties": batch_file},
            },
        },
        "UploadResult": {
            "type": "object",
            "required": ["result"],
            "properties": {"result": _ref("Batch")},
        },
        "BatchSearch": _results(_ref("Batch")),
    }


def _resolve_schemas() -> Json:
    entry = {
        "type": "object",
        "required": ["digest"],
        "properties": {
            "digest": {
                "type": "string",
                "description": "The file's sha512 digest (anything else is that entry's 400)",
            },
            "algorithm": {
                "description": "`sha512`, or absent: anything else is that entry's 400 (`"
                + resolve.WRONG_ALGORITHM
                + "`)",
            },
        },
        "description": "A manifest entry: other keys (filename, size, unpack, visibility, …)"
        " are ignored.",
    }
    digest = {"type": "string", "description": "The entry's digest, as sent"}
    answer = {
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["digest", "url"],
                "properties": {
                    "digest": digest,
                    "url": {
                        "type": "string",
                        "description": "The signed URL GET /sha512/<digest> redirects to",
                    },
                },
            },
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["digest", "problem"],
                "properties": {
                    "digest": digest,
                    "problem": {
                        **_ref("Problem"),
                        "description": "The problem GET /sha512/<digest> answers (400, 403,"
                        " 404; 500 for a damaged index object)",
                    },
                },
            },
        ]
    }
    return {
        "Manifest": {
            "type": "array",
            "items": entry,
            # Not `maxItems`: past it the answer is a 413, which a schema cannot say.
            "description": f"At most {resolve.MAX_ENTRIES} entries (413 past that), in a body"
            f" of at most {DEFAULT_LIMIT} bytes (413 too).",
        },
        "Resolved": {
            "type": "object",
            "required": ["files"],
            "properties": {
                "files": {
                    "type": "array",
                    "items": answer,
                    "description": "One answer per manifest entry, in the manifest's order",
                }
            },
        },
    }


def _other_schemas() -> Json:
    reason = {"type": "string", "maxLength": MAX_REASON, "pattern": _LINE_TEXT}
    operations = [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["op", "visibility"],
            "properties": {
                "op": {"const": "set_visibility"},
                "visibility": {"type": "string", "enum": ["public", "internal"]},
                "reason": reason,
            },
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["op"],
            "properties": {"op": {"const": "delete_instances"}, "reason": reason},
        },
    ]
    scopes = {"type": "array", "items": {"type": "string"}}
    return {
        "Operations": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_OPERATIONS,
            "items": {"oneOf": operations},
            "description": '`{"op": "set_visibility", "visibility": …}` and'
            ' `{"op": "delete_instances"}`, each with an optional `reason`.',
        },
        "TokenRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "scopes": {
                    "type": "array",
                    "maxItems": token_routes.MAX_SCOPES,
                    "items": {"type": "string", "maxLength": token_routes.MAX_SCOPE_LENGTH},
                },
                "expires_in": {"type": "integer", "minimum": 1},
            },
        },
        "Token": {
            "type": "object",
            "required": ["token", "expires", "scopes", "clientId"],
            "properties": {
                "token": {"type": "string"},
                "expires": {"type": "string", "format": "date-time"},
                "scopes": scopes,
                "clientId": {"type": "string"},
            },
        },
        "Permissions": {
            "type": "object",
            "required": ["clientId", "scopes"],
            "properties": {"clientId": {"type": ["string", "null"]}, "scopes": scopes},
        },
        "Jwks": {
            "type": "object",
            "required": ["keys"],
            "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
        },
    }


def _region() -> Json:
    return _query(
        "region",
        "The preferred region, when it holds a copy (anything else is ignored)",
        {"type": "string"},
    )


def _download_paths() -> Json:
    redirect = {
        "description": "A redirect to a short-lived signed URL of the blob",
        "headers": {"Location": _header("The signed URL", required=True)},
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
    return {
        "/sha512/{digest}": {
            "parameters": [_path_parameter("digest", _ref("Digest"))],
            "get": _operation(
                "Download a file: a redirect to its bytes",
                {"302": redirect, **_errors(400, 401, 403, 404)},
                operationId="download",
                parameters=[_region()],
            ),
        },
    }


def _resolve_paths() -> Json:
    return {
        resolve.PATH: {
            "post": _operation(
                "Resolve a manifest: for each entry, what GET /sha512/<digest> answers",
                {
                    **_ok(_ref("Resolved")),
                    **_errors(400, 401),
                    "413": _problem(
                        413,
                        f"More than {resolve.MAX_ENTRIES} entries, or a body of more than"
                        f" {DEFAULT_LIMIT} bytes",
                    ),
                },
                operationId="resolve",
                description="The caller is authenticated once (invalid credentials: 401);"
                " then each entry gets the signed URL GET /sha512/<digest> would redirect"
                " the same caller to, or the problem body it would answer. Duplicate"
                f" digests are looked up once. At most {resolve.MAX_ENTRIES} entries.",
                parameters=[_region()],
                requestBody={"required": True, "content": _json(_ref("Manifest"))},
            ),
        },
    }


def _upload_paths() -> Json:
    accepted = {
        "type": "object",
        "required": ["digest", "status"],
        "properties": {"digest": _ref("Digest"), "status": {"const": "accepted"}},
    }
    return {
        "/upload": {
            "post": _operation(
                "Post a batch: signed PUT URLs for the files the store lacks",
                {**_ok(_ref("UploadResult")), **_errors(400, 401, 403, 413, 429, 507)},
                operationId="upload",
                parameters=[_query("region", "The region to upload to")],
                requestBody={"required": True, "content": _json(_ref("UploadRequest"))},
            ),
            "get": _operation(
                "Search batches by a substring of their author or message",
                {**_ok(_ref("BatchSearch")), **_errors(400, 401)},
                operationId="searchBatches",
                parameters=[_search("A substring of an author or a message")],
            ),
        },
        "/upload/complete/sha512/{digest}": {
            "parameters": [_path_parameter("digest", _ref("Digest"))],
            "get": _operation(
                "Report an upload's bytes PUT: the indexer verifies them next",
                {**_ok(accepted, "Accepted", "202"), **_errors(400, 401, 403)},
                operationId="completeUpload",
            ),
        },
        "/upload/{batch_id}": {
            "parameters": [_path_parameter("batch_id", {"type": "string"}, "A batch id")],
            "get": _operation(
                "A batch: the bare batch object, as the legacy get_batch answers it",
                {**_ok(_ref("Batch")), **_errors(401, 403, 404)},
                operationId="showBatch",
            ),
        },
    }


def _file_paths() -> Json:
    return {
        "/file/sha512/{digest}": {
            "parameters": [_path_parameter("digest", _ref("Digest"))],
            "get": _operation(
                "A file: its size, visibility and the regions holding it",
                {**_ok(_ref("File")), **_errors(400, 401, 403, 404)},
                operationId="showFile",
            ),
            "patch": _operation(
                "Change a file's visibility or delete its instances (needs …/manage)",
                {**_ok(_ref("File")), **_errors(400, 401, 403, 404, 413, 507)},
                operationId="manageFile",
                requestBody={"required": True, "content": _json(_ref("Operations"))},
            ),
        },
        "/file": {
            "get": _operation(
                "Search files by a hash prefix (at least 8 hex characters) or a filename",
                {**_ok(_ref("FileSearch")), **_errors(400, 401)},
                operationId="searchFiles",
                parameters=[_search("A hash prefix or a substring of a filename")],
            ),
        },
    }


def _token_paths() -> Json:
    return {
        "/token": {
            "post": {
                "summary": "Exchange Taskcluster credentials (Hawk or Basic) for a short-lived JWT",
                "operationId": "token",
                "security": [{"hawk": []}, {"basic": []}],
                "requestBody": {"required": False, "content": _json(_ref("TokenRequest"))},
                "responses": {**_ok(_ref("Token")), **_errors(400, 401, 413)},
            },
        },
        "/__permissions__": {
            "get": _operation(
                "Who the caller is, and its tooltool scopes",
                {**_ok(_ref("Permissions")), **_errors(401)},
                operationId="permissions",
            ),
        },
        "/.well-known/jwks.json": {
            "get": _operation(
                "The public keys tokens are signed with (none for HS256)",
                {**_ok(_ref("Jwks")), **_errors()},
                security=False,
                operationId="jwks",
            ),
        },
    }


def _dockerflow_paths() -> Json:
    status: Json = {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": "ok"}},
    }
    heartbeat = {
        **status,
        "properties": {
            **status["properties"],
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    metrics = {
        "200": {
            "description": "The Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **_errors(403),
    }
    answers = {
        "/__lbheartbeat__": ("The process answers (no dependencies)", _ok(status)),
        "/__heartbeat__": (
            "Every store's check, and on S3 without the embedded indexer the indexer's;"
            " 503 names what failed (error, timeout, low-disk-space, stale, uploads-waiting)",
            _ok(heartbeat),
        ),
        "/__version__": ("version.json (Dockerflow)", _ok({"type": "object"})),
        "/__metrics__": (
            "Prometheus metrics, to the networks of TOOLTOOL_METRICS_NETWORKS (403 to others)",
            metrics,
        ),
    }
    return {
        path: {
            "get": _operation(
                summary,
                {**responses, **_errors()},
                security=False,
                operationId=path.strip("_"),
                tags=["dockerflow"],
            )
        }
        for path, (summary, responses) in answers.items()
    }


def _store_paths() -> Json:
    signed = [
        _path_parameter("region", description="A region of the local store"),
        _path_parameter("key", description="The object's key"),
        {"name": "expires", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "signature", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "content-type", "in": "query", "schema": {"type": "string"}},
        {"name": "content-length", "in": "query", "schema": {"type": "string"}},
    ]
    octets = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    etag = {"ETag": _header("The stored object's ETag", required=True)}
    return {
        STORE_ROUTE_PREFIX + "/{region}/{key}": {
            "parameters": signed,
            "get": _operation(
                "Read an object by a URL the gateway signed (local store only; Range supported)",
                {
                    "200": {"description": "The object", "content": octets},
                    "206": {"description": "The requested range", "content": octets},
                    **_errors(400, 403, 404, 416),
                },
                security=False,
                operationId="readSigned",
                tags=["local store"],
            ),
            "put": _operation(
                "Write an object by a URL the gateway signed (local store only)",
                {
                    "200": {"description": "Stored", "headers": etag},
                    **_errors(400, 403, 404, 409, 411, 413, 507),
                },
                security=False,
                operationId="writeSigned",
                tags=["local store"],
                requestBody={
                    "required": True,
                    "description": f"At most {MAX_PUT_BYTES} bytes",
                    "content": octets,
                },
            ),
        }
    }


def _site_paths() -> Json:
    page = {"description": "A page or asset of the site", "content": {"*/*": {}}}
    not_modified = {"description": "The page has the ETag sent in If-None-Match"}
    public = {"200": page, "304": not_modified, **_errors(404)}
    sign_in = {
        "description": "A page saying how to get a token (401 anonymous, 403 without the scope)",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
    internal = {**public, "401": sign_in, "403": sign_in}
    path = [_path_parameter("path", description="A page under the section")]

    if_none_match = {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "description": "ETags of a copy the client holds: 304 when the page's is among them",
        "schema": {"type": "string"},
    }

    def get(summary: str, responses: Json, name: str, *, security: bool = False) -> Json:
        return {
            "get": _operation(
                summary,
                responses,
                security=security,
                operationId=name,
                tags=["site"],
                parameters=[if_none_match] if "304" in responses else [],
            )
        }

    paths = {
        "/": get("The public site's home page", public, "siteHome"),
        "/index.html": get("The public site's home page", public, "siteIndex"),
        "/internal": get(
            "A redirect to /internal/",
            {
                "307": {
                    "description": "To internal/",
                    "headers": {"Location": _header("internal/")},
                },
                **_errors(),
            },
            "siteInternalRedirect",
        ),
        "/internal/{path}": {
            "parameters": path,
            **get(
                "The internal site (needs …/download/internal)",
                internal,
                "siteInternal",
                security=True,
            ),
        },
    }
    for section in SECTIONS:
        paths[f"/{section}/{{path}}"] = {
            "parameters": path,
            **get(f"The public site's {section}/", public, f"site-{section}"),
        }
    return paths


def describe(*, local_store: bool, root_path: str = "") -> Json:
    """The OpenAPI 3.1 description of the gateway; `local_store` adds its signed-URL routes,
    `root_path` (``TOOLTOOL_ROOT_PATH``) is where the paths start on the host."""
    try:
        version = importlib.metadata.version("tooltool")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    paths = {
        **_download_paths(),
        **_resolve_paths(),
        **_upload_paths(),
        **_file_paths(),
        **_token_paths(),
        **(_store_paths() if local_store else {}),
        **_dockerflow_paths(),
        **_site_paths(),
        PATH: {
            "get": _operation(
                "This description",
                {**_ok({"type": "object"}), **_errors()},
                security=False,
                operationId="openapi",
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "servers": [{"url": root_path or "/"}],
        "info": {
            "title": "ToolTool",
            "version": version,
            "description": "A content-addressed artifact store: downloads by sha512 digest,"
            " uploads in batches, the legacy tooltool API. Every error is problem JSON"
            " (Content-Type application/json); every answer carries X-Request-Id.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "hawk": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": _HAWK,
                },
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "Taskcluster client id and access token; POST /token only.",
                },
            },
        },
    }


class ApiDescription:
    """Serves the description, serialised once."""

    def __init__(self, *, local_store: bool, root_path: str = "") -> None:
        described = describe(local_store=local_store, root_path=root_path)
        self._body = json.dumps(described, sort_keys=True).encode()

    def routes(self) -> Sequence[BaseRoute]:
        return [Route(PATH, self.serve, methods=["GET", "HEAD"])]

    async def serve(self, request: Request) -> Response:
        return Response(
            self._body,
            media_type="application/json",
            headers={"Cache-Control": f"public, max-age={MAX_AGE}"},
        )
