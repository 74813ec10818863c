"""The Hawk replay memory: bounded in bytes, given back when nonces expire, never fooled.

Regression (review finding 6): 40k requests with 3,800-character nonces added
154 MB, 150k more reached 872 MB, and the memory stayed after the nonces
expired (the worst case was about 4 GB).
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import mohawk
import pytest

from gateway.hawk import MAX_NONCE_LENGTH, HawkError, NonceCache
from gateway.settings import AuthSettings
from tests.gateway.auth_helpers import CLIENTS, clients_file_entries
from tests.gateway.conftest import Gateway, random_bytes
from tests.gateway.test_download import assert_problem
from tests.system import BASE


def signed(path: str, *, nonce: str, client_id: str = "reader") -> str:
    sender = mohawk.Sender(
        {"id": client_id, "key": CLIENTS[client_id]["accessToken"], "algorithm": "sha256"},
        BASE + path,
        "GET",
        content="",
        content_type="",
        always_hash_content=False,
        nonce=nonce,
    )
    return sender.request_header


def test_long_nonces_are_refused_before_they_are_remembered(
    make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    gateway = make_gateway(auth=AuthSettings(clients_file=clients, jwt_secret="s" * 32))
    digest = gateway.add(random_bytes(), "internal")
    client = gateway.client()
    path = f"/sha512/{digest}"
    ok = client.get(path, headers={"Authorization": signed(path, nonce="n" * MAX_NONCE_LENGTH)})
    assert ok.status_code == 302
    long = signed(path, nonce="n" * 3800)
    problem = assert_problem(client.get(path, headers={"Authorization": long}), 401)
    assert "nonce is longer than" in problem["detail"]


def flood(cache: NonceCache, client: str, count: int, now: float) -> int:
    """`count` requests spread over the window, oldest first; how many were accepted."""
    accepted = 0
    for number in range(count):
        ts = str(int(now) - 29 + number * 58 // count)
        try:
            cache.check_and_remember(client, ts, f"nonce-{number}", now)
        except HawkError:
            continue  # refused: at or before a timestamp the memory had to forget
        accepted += 1
    return accepted


def test_memory_is_bounded_in_bytes() -> None:
    cache = NonceCache(window=60, max_bytes=1024 * 1024)
    accepted = flood(cache, "client", 20_000, time.time())
    assert cache.size_bytes <= 1024 * 1024
    assert 0 < len(cache) < 20_000
    assert accepted > 10_000  # most of a flood of newer requests still gets through


def test_a_nonce_forgotten_early_can_never_be_replayed() -> None:
    cache = NonceCache(window=60, max_bytes=1024 * 1024)
    now = time.time()
    first_ts = str(int(now) - 30)
    cache.check_and_remember("client", first_ts, "first", now)
    flood(cache, "client", 10_000, now)  # pushes "first" out of the bounded memory
    with pytest.raises(HawkError, match="too old for the replay memory"):
        cache.check_and_remember("client", first_ts, "first", now)
    # Other clients are not affected by one client's flood.
    cache.check_and_remember("other", first_ts, "first", now)


def test_a_replay_within_the_window_is_refused_and_memory_returns_after_it() -> None:
    now = 1_000_000.0
    cache = NonceCache(window=60)
    cache.check_and_remember("client", str(int(now)), "once", now)
    with pytest.raises(HawkError):
        cache.check_and_remember("client", str(int(now)), "once", now + 59)
    cache.check_and_remember("client", str(int(now) + 200), "later", now + 200)
    assert len(cache) == 1


def test_expired_nonces_give_their_memory_back() -> None:
    now = 1_000_000.0
    tracemalloc.start()
    try:
        cache = NonceCache(window=60, max_bytes=512 * 1024 * 1024)
        baseline = tracemalloc.get_traced_memory()[0]
        for number in range(40_000):
            cache.check_and_remember("client", str(int(now)), f"{number:064}", now)
        full = tracemalloc.get_traced_memory()[0] - baseline
        cache.check_and_remember("client", str(int(now) + 600), "later", now + 600)
        after = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert full > 5 * 1024 * 1024
    assert after < full / 20, (full, after)
    assert len(cache) == 1
