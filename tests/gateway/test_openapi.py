"""``GET /openapi.json``: a valid OpenAPI 3.1 description, matching the app's routes both ways."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.openapi import describe
from indexer.stores import Regions
from tests.conftest import unreachable_s3_store
from tests.gateway.conftest import Gateway

METHODS = frozenset({"get", "put", "post", "patch", "delete", "head", "options", "trace"})


def starlette_app(app: Any) -> Starlette:
    """The Starlette app inside the gateway's middleware."""
    while not isinstance(app, Starlette):
        app = app.app
    return app


def routed(app: Any) -> set[tuple[str, str]]:
    """(path template, method) of every route, HEAD implied by GET as Starlette implies it."""
    found = set()
    for route in starlette_app(app).routes:
        assert isinstance(route, Route), route  # no mounts: each would need describing
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":
                found.add((path, method.lower()))
    return found


def described(description: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in description["paths"].items()
        for method in item
        if method in METHODS
    }


@pytest.mark.parametrize("local_store", [True, False])
def test_the_description_is_valid_openapi_3_1(local_store: bool) -> None:
    description = describe(local_store=local_store)
    assert description["openapi"] == "3.1.0"
    validate(description)  # raises on anything the 3.1 meta-schema refuses


def test_every_route_is_described_and_every_operation_routed(gateway: Gateway) -> None:
    app = gateway.app()
    served = gateway.client().get("/openapi.json").json()
    assert routed(app) == described(served)
    assert ("/__store__/{region}/{key}", "put") in described(served)
    assert ("/sha512/{digest}", "get") in described(served)


def test_without_a_local_store_the_signed_url_routes_are_neither_routed_nor_described(
    gateway: Gateway,
) -> None:
    app = gateway.app()
    # The same app over S3: no /__store__ routes, and none described.
    s3 = type(gateway)(Regions([unreachable_s3_store()]), gateway.tmp_path, gateway.settings)
    s3_app = s3.app()
    assert routed(s3_app) == described(describe(local_store=False))
    assert routed(app) - routed(s3_app) == {
        ("/__store__/{region}/{key}", "get"),
        ("/__store__/{region}/{key}", "put"),
    }


def test_served_once_cached_with_no_secret(gateway: Gateway) -> None:
    client = gateway.client()
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "public, max-age=300"
    assert answer.json() == json.loads(json.dumps(describe(local_store=True)))
    head = client.head("/openapi.json")
    assert head.status_code == 200
    assert head.content == b""
    text = answer.text
    for secret in ("s" * 32, str(gateway.tmp_path), "accessToken", "signing-key"):
        assert secret not in text


def test_every_problem_answer_is_the_problem_schema(gateway: Gateway) -> None:
    description = describe(local_store=True)
    for path, item in description["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            responses: dict[str, Any] = operation["responses"]
            assert "500" in responses, (path, method)
            for status, response in responses.items():
                if int(status) >= 400 and not path.startswith("/internal"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}, (path, status)


def test_the_site_sections_and_limits_come_from_the_code(gateway: Gateway) -> None:
    from gateway.site import SECTIONS
    from gateway.upload_parsing import MAX_FILES

    description = describe(local_store=True)
    assert {f"/{section}/{{path}}" for section in SECTIONS} <= set(description["paths"])
    files = description["components"]["schemas"]["UploadRequest"]["properties"]["files"]
    assert files["maxProperties"] == MAX_FILES


def test_under_a_path_prefix_the_paths_start_there(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(root_path="/tooltool")
    described = gateway.client().get("/tooltool/openapi.json").json()
    assert described["servers"] == [{"url": "/tooltool"}]
    assert describe(local_store=True)["servers"] == [{"url": "/"}]
