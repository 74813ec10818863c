"""Taskcluster down (hung, answering 5xx, closing connections) under a live gateway.

Hawk callers get a 503 problem with ``Retry-After`` within TASKCLUSTER_TIMEOUT,
never a 401 or a 500, and so does a token exchange; Bearer tokens issued before
keep working, with no Taskcluster call, until they expire; a gateway on the
clients file never asks Taskcluster. Once Taskcluster answers again, Hawk
works again without a restart.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from gateway.app import create_app
from gateway.credentials import Credentials
from gateway.identity import TaskclusterProvider
from gateway.settings import AuthSettings
from gateway.tokens import TokenService
from tests.conftest import LiveServer, free_port
from tests.fault_proxy import FaultProxy
from tests.gateway.auth_helpers import CLIENTS, basic, clients_file_entries, hawk
from tests.gateway.conftest import Gateway, random_bytes
from tests.gateway.test_download import assert_problem
from tests.taskcluster_double import TaskclusterDouble

SECRET = "test-jwt-secret-0123456789abcdefghij"
LIFETIME = 600
LEEWAY = 30  # the token service's default
CLIENT_BOUND = 15.0  # far above TASKCLUSTER_TIMEOUT (1 s): fails a wedged request
PER_KIND = 10


@pytest.fixture
def taskcluster(live_server: Callable[[Any, int], LiveServer]) -> Iterator[FaultProxy]:
    """The Taskcluster double over real HTTP, behind a proxy the test makes fail."""
    double = TaskclusterDouble()
    for client_id, client in CLIENTS.items():
        double.add_client(client_id, client["accessToken"], client["scopes"])
    server = live_server(double.app(), free_port())
    with FaultProxy(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as proxy:
        yield proxy


class Clock:
    """The token service's clock, which the test moves on."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Caller:
    """Requests to a live gateway, as Hawk, Bearer or Basic callers send them."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self.client = client
        self.url = url

    def hawk_get(self, client_id: str, path: str) -> httpx.Response:
        return self.client.get(path, headers={"Authorization": hawk(client_id, self.url + path)})

    def hawk_token(self, client_id: str) -> httpx.Response:
        header = hawk(client_id, f"{self.url}/token", "POST")
        return self.client.post("/token", headers={"Authorization": header})

    def bearer_get(self, token: str, path: str) -> httpx.Response:
        return self.client.get(path, headers={"Authorization": f"Bearer {token}"})

    def basic_token(self, client_id: str) -> httpx.Response:
        return self.client.post("/token", headers={"Authorization": basic(client_id)})


@pytest.mark.parametrize("mode", ["hang", "error", "close"])
def test_taskcluster_down_is_503_for_hawk_while_bearer_tokens_last(
    mode: Any,
    taskcluster: FaultProxy,
    make_gateway: Callable[..., Gateway],
    live_server: Callable[[Any, int], LiveServer],
) -> None:
    auth = AuthSettings(
        identity_provider="taskcluster", taskcluster_root_url=taskcluster.url, jwt_secret=SECRET
    )
    gateway = make_gateway(auth=auth)
    internal = gateway.add(random_bytes(), "internal", "internal.bin")
    public = gateway.add(random_bytes(), "public", "public.bin")
    clock = Clock()
    credentials = Credentials(
        TaskclusterProvider(taskcluster.url, timeout=1),
        TokenService.hmac(
            SECRET,
            issuer="tooltool",
            audience="tooltool",
            lifetime=LIFETIME,
            max_lifetime=3600,
            clock=clock,
        ),
    )
    app = create_app(gateway.settings, gateway.regions, credentials=credentials)
    server = live_server(app, free_port())
    with httpx.Client(base_url=server.url, timeout=CLIENT_BOUND) as client:
        caller = Caller(client, server.url)
        answer = caller.hawk_token("reader")
        assert answer.status_code == 200, answer.text
        token = answer.json()["token"]
        assert caller.bearer_get(token, f"/sha512/{internal}").status_code == 302

        taskcluster.set(mode)
        kinds: dict[str, Callable[[], httpx.Response]] = {
            "hawk": lambda: caller.hawk_get("reader", f"/sha512/{internal}"),
            "hawk-token": lambda: caller.hawk_token("reader"),
            "basic-token": lambda: caller.basic_token("reader"),  # Taskcluster verifies it
            "bearer": lambda: caller.bearer_get(token, f"/sha512/{internal}"),
            "anonymous": lambda: client.get(f"/sha512/{public}"),
        }
        calls = [(kind, call) for _ in range(PER_KIND) for kind, call in kinds.items()]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda item: (item[0], item[1]()), calls))
        counts = Counter(f"{kind}:{response.status_code}" for kind, response in answers)
        assert counts == {
            "hawk:503": PER_KIND,
            "hawk-token:503": PER_KIND,
            "basic-token:503": PER_KIND,
            "bearer:302": PER_KIND,
            "anonymous:302": PER_KIND,
        }
        for _, response in answers:
            if response.status_code == 503:
                body = assert_problem(response, 503)
                assert response.headers["retry-after"].isdigit()
                assert "127.0.0.1" not in body["detail"]

        # Until it expires (and the verifiers' leeway), then no longer.
        clock.now += LIFETIME + LEEWAY - 1
        assert caller.bearer_get(token, f"/sha512/{internal}").status_code == 302
        clock.now += 2
        assert_problem(caller.bearer_get(token, f"/sha512/{internal}"), 401)

        taskcluster.set("pass")
        assert caller.hawk_get("reader", f"/sha512/{internal}").status_code == 302
        assert caller.hawk_token("reader").status_code == 200


def test_a_gateway_on_the_clients_file_never_asks_taskcluster(
    make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(clients_file_entries()))
    auth = AuthSettings(
        identity_provider="clients-file",
        clients_file=path,
        taskcluster_root_url=f"http://127.0.0.1:{free_port()}",  # nothing there
        jwt_secret=SECRET,
    )
    gateway = make_gateway(auth=auth)
    internal = gateway.add(random_bytes(), "internal", "internal.bin")
    client = gateway.client()
    url = f"http://testserver/sha512/{internal}"
    response = client.get(f"/sha512/{internal}", headers={"Authorization": hawk("reader", url)})
    assert response.status_code == 302
    assert client.post("/token", headers={"Authorization": basic("reader")}).status_code == 200
