"""``GET /__metrics__``: what the gateway counts, under which labels, and who may read it.

Labels are the code's own text: route templates, methods from a known set,
statuses, regions, outcomes. No digest, path, client id or other caller text
is ever a label (every scrape below is checked for the digests asked).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.metrics import GatewayMetrics
from gateway.settings import AuthSettings, Settings
from indexer.config import SettingsError, open_regions
from indexer.logs import configure_logging
from tests.conftest import LiveServer, free_port
from tests.gateway import test_fast_path
from tests.gateway.auth_helpers import basic
from tests.gateway.conftest import Gateway, random_bytes
from tests.gateway.test_download import UNKNOWN, assert_problem

LOOPBACK = ("127.0.0.1", 50000)
auth = test_fast_path.auth  # the fixture: callers of tests/gateway/auth_helpers.py


def client_for(app: Any, address: tuple[str, int] = LOOPBACK) -> TestClient:
    return TestClient(app, follow_redirects=False, raise_server_exceptions=False, client=address)


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    response = client.get("/__metrics__")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_template_method_and_status(
    make_gateway: Callable[..., Gateway], auth: AuthSettings
) -> None:
    gateway = make_gateway(auth=auth)
    digest = gateway.add(random_bytes())
    client = client_for(gateway.app())
    assert client.get(f"/sha512/{digest}").status_code == 302  # a miss: the app answers
    assert client.get(f"/sha512/{digest}").status_code == 302  # a hit: the fast path
    assert client.head(f"/sha512/{digest}").status_code == 302
    assert_problem(client.get(f"/sha512/{UNKNOWN}"), 404)
    assert_problem(client.get("/sha512/not-a-digest"), 400)
    assert_problem(client.get(f"/elsewhere/{digest}"), 404)
    assert_problem(client.request("BREW", f"/sha512/{digest}"), 405)
    response = client.get("/__metrics__")
    samples = scrape(client)
    requests = "tooltool_http_requests_total"
    route = "/sha512/{digest}"
    assert value(samples, requests, method="GET", route=route, status="302") == 2
    assert value(samples, requests, method="HEAD", route=route, status="302") == 1
    assert value(samples, requests, method="GET", route=route, status="404") == 1
    assert value(samples, requests, method="GET", route=route, status="400") == 1
    assert value(samples, requests, method="GET", route="(unmatched)", status="404") == 1
    assert value(samples, requests, method="other", route=route, status="405") == 1
    assert value(samples, requests, method="GET", route="/__metrics__", status="200") == 1
    latency = "tooltool_http_request_duration_seconds"
    assert value(samples, f"{latency}_count", method="GET", route=route, status="302") == 2
    assert (
        value(samples, f"{latency}_bucket", method="GET", route=route, status="302", le="+Inf") == 2
    )
    assert value(samples, f"{latency}_sum", method="GET", route=route, status="302") > 0
    # The first download missed the index cache and the unknown digest too; the second hit.
    assert value(samples, "tooltool_index_cache_requests_total", result="miss") == 2
    assert value(samples, "tooltool_index_cache_requests_total", result="hit") == 2
    assert value(samples, "tooltool_signed_urls_total", result="signed") == 1
    assert value(samples, "tooltool_signed_urls_total", result="reused") == 2
    # The index reads of both digests, through the instrumented store.
    calls = "tooltool_store_calls_total"
    assert value(samples, calls, region="local", operation="get", outcome="ok") == 1
    assert value(samples, calls, region="local", operation="get", outcome="not_found") == 1
    assert value(samples, calls, region="local", operation="presign_get", outcome="ok") == 1
    stored = "tooltool_store_call_duration_seconds_count"
    assert value(samples, stored, region="local", operation="get") == 2
    text = response.text
    assert digest not in text
    assert UNKNOWN not in text
    assert "elsewhere" not in text
    assert "BREW" not in text


def test_token_verifications_are_counted_by_scheme_and_outcome(
    make_gateway: Callable[..., Gateway], auth: AuthSettings
) -> None:
    gateway = make_gateway(auth=auth)
    digest = gateway.add(random_bytes(), "internal")
    client = client_for(gateway.app())
    token = test_fast_path.token(client)
    wrong = basic("reader", "not-the-access-token-0123")
    assert_problem(client.post("/token", headers={"Authorization": wrong}), 401)
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/sha512/{digest}", headers=bearer).status_code == 302
    assert client.get(f"/sha512/{digest}", headers=bearer).status_code == 302  # fast path
    garbage = {"Authorization": "Bearer not.a.token"}
    assert_problem(client.get(f"/sha512/{digest}", headers=garbage), 401)
    samples = scrape(client)
    verifications = "tooltool_token_verifications_total"
    assert value(samples, verifications, scheme="basic", outcome="ok") == 1
    assert value(samples, verifications, scheme="basic", outcome="invalid") == 1
    # A token verified once is remembered: its second use is no verification.
    assert value(samples, verifications, scheme="bearer", outcome="ok") == 1
    assert value(samples, verifications, scheme="bearer", outcome="invalid") == 1
    assert token not in json.dumps(list(samples))


@pytest.mark.parametrize(
    ("networks", "address", "status"),
    [
        ("", ("127.0.0.1", 1), 200),  # loopback by default
        ("", ("::1", 1), 200),
        ("", ("192.0.2.7", 1), 403),
        ("", ("testclient", 1), 403),  # not an address
        ("192.0.2.0/24", ("192.0.2.7", 1), 200),
        ("192.0.2.0/24", ("127.0.0.1", 1), 403),
        ("none", ("127.0.0.1", 1), 403),
    ],
)
def test_metrics_are_served_to_the_configured_networks_only(
    tmp_path: Path, networks: str, address: tuple[str, int], status: int
) -> None:
    environ = {"TOOLTOOL_DATA_DIR": str(tmp_path / "data"), "TOOLTOOL_METRICS_NETWORKS": networks}
    settings = Settings.from_environ(environ)
    response = client_for(create_app(settings, open_regions(settings.stores)), address).get(
        "/__metrics__"
    )
    if status == 200:
        assert response.status_code == 200
        assert "tooltool_http_requests_total" in response.text
    else:
        body = assert_problem(response, 403)
        assert "TOOLTOOL_METRICS_NETWORKS" in body["detail"]


def test_a_bad_network_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^TOOLTOOL_METRICS_NETWORKS: .*10\.0\.0\.0/33"):
        Settings.from_environ({"TOOLTOOL_METRICS_NETWORKS": "127.0.0.1,10.0.0.0/33"})


@pytest.fixture
def mozlog_lines() -> Iterator[io.StringIO]:
    """The lines production writes (one mozlog handler: the fast path's direct lines)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging(log_format="mozlog", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def summaries(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [
        json.loads(line)["Fields"]
        for line in buffer.getvalue().splitlines()
        if '"request.summary"' in line
    ]


def test_summary_lines_name_route_digest_caller_and_decision(
    make_gateway: Callable[..., Gateway], auth: AuthSettings, mozlog_lines: io.StringIO
) -> None:
    gateway = make_gateway(auth=auth)
    internal = gateway.add(random_bytes(), "internal")
    client = client_for(gateway.app())
    token = test_fast_path.token(client)
    bearer = {"Authorization": f"Bearer {token}"}
    client.get(f"/sha512/{internal}", headers=bearer)  # the app: a miss
    client.get(f"/sha512/{internal}", headers=bearer)  # the fast path: a hit
    client.get(f"/sha512/{internal}")  # anonymous: forbidden
    client.get("/sha512/not-a-digest")
    client.get(f"/file/sha512/{UNKNOWN}")
    token_line, app, fast, forbidden, invalid, unknown = summaries(mozlog_lines)
    assert token_line["route"] == "/token"
    assert token_line["client"] == "reader"
    assert token_line["decision"] == "ok"
    assert "digest" not in token_line
    # The same fields, in the same order, from both paths; only time and id differ.
    for line in (app, fast):
        line.pop("t")
        line.pop("rid")
    assert list(app.items()) == list(fast.items())
    assert app == {
        "method": "GET",
        "path": f"/sha512/{internal}",
        "code": 302,
        "route": "/sha512/{digest}",
        "digest": internal,
        "client": "reader",
        "decision": "redirect",
    }
    assert forbidden["decision"] == "forbidden"
    assert forbidden["digest"] == internal
    assert "client" not in forbidden  # anonymous
    assert invalid["decision"] == "invalid"
    assert "digest" not in invalid  # not a digest: the path alone names it
    assert unknown["route"] == "/file/sha512/{digest}"
    assert unknown["decision"] == "not-found"
    assert unknown["digest"] == UNKNOWN
    assert token not in mozlog_lines.getvalue()


def test_requests_the_server_refuses_are_counted(tmp_path: Path) -> None:
    settings = Settings.from_environ({"TOOLTOOL_DATA_DIR": str(tmp_path / "data")})
    metrics = GatewayMetrics()
    app = create_app(settings, open_regions(settings.stores), metrics=metrics)
    with LiveServer(app, free_port(), metrics) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
            )
            assert connection.recv(100).startswith(b"HTTP/1.1 431 ")
        with urllib.request.urlopen(f"{server.url}/__metrics__", timeout=10) as answer:
            text = answer.read().decode()
    assert 'tooltool_http_refused_total{status="431"} 1.0' in text
