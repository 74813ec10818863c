"""Fixtures for gateway tests: a local-store gateway with files in it, through TestClient."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.auth import Caller
from gateway.settings import Settings
from indexer.importer import import_file
from indexer.local_store import LocalStore
from indexer.stores import Regions
from tests.conftest import make_local_store, settings_for

PREFIX = "project:releng:services/tooltool/api"


class FixedAuthenticator:
    """Every request comes from one caller (a seam in code, not in configuration)."""

    def __init__(self, *scopes: str, client_id: str = "test-client") -> None:
        self.caller = Caller(client_id, frozenset(scopes))

    async def authenticate(self, request: Request) -> Caller:
        return self.caller


@dataclass
class Gateway:
    """A gateway app over local stores, with helpers to add files."""

    regions: Regions
    tmp_path: Path
    settings: Settings

    def add(self, data: bytes, visibility: str = "public", name: str = "file.bin") -> str:
        path = self.tmp_path / "uploads" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        imported = import_file(
            self.regions, path, visibility=visibility, message="test", author="tester"
        )  # type: ignore[arg-type]
        return imported.digest

    def app(self, *, authenticator: Any = None) -> Any:
        return create_app(self.settings, self.regions, authenticator=authenticator)

    def client(self, *, authenticator: Any = None, **kwargs: Any) -> TestClient:
        return TestClient(
            self.app(authenticator=authenticator),
            follow_redirects=False,
            raise_server_exceptions=False,
            **kwargs,
        )


@pytest.fixture
def make_gateway(tmp_path: Path) -> Callable[..., Gateway]:
    def make(*regions: str, **settings: Any) -> Gateway:
        stores: list[LocalStore] = []
        for region in regions or ("local",):
            stores.append(make_local_store(tmp_path / region, region=region))
        return Gateway(Regions(stores), tmp_path, settings_for(tmp_path / "data", **settings))

    return make


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


def random_bytes(size: int = 1000) -> bytes:
    return os.urandom(size)
