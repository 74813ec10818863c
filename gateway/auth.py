"""Who is calling, and what their Taskcluster scopes let them do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request
from taskcluster.utils import scopeMatch

from indexer.schema import Visibility


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated client, or the anonymous caller (client_id None)."""

    client_id: str | None
    scopes: frozenset[str]

    @property
    def is_anonymous(self) -> bool:
        return self.client_id is None

    def has_scope(self, scope: str) -> bool:
        """Taskcluster's matching rules: equality, or a held scope ending in ``*``."""
        return scopeMatch(self.scopes, [[scope]])


@dataclass(frozen=True, slots=True)
class Permissions:
    """The tooltool scopes under a configurable prefix (the legacy table in DESIGN.md)."""

    prefix: str

    def download(self, visibility: Visibility) -> str:
        return f"{self.prefix}/download/{visibility}"

    def upload(self, visibility: Visibility) -> str:
        return f"{self.prefix}/upload/{visibility}"

    @property
    def manage(self) -> str:
        return f"{self.prefix}/manage"

    def anonymous(self, *, allow_public_download: bool) -> Caller:
        """The caller without credentials: public downloads only, when allowed."""
        scopes = frozenset({self.download("public")}) if allow_public_download else frozenset()
        return Caller(None, scopes)


class Authenticator(Protocol):
    """Decides who a request comes from."""

    async def authenticate(self, request: Request) -> Caller:
        """The request's caller; raises a 401 problem for invalid credentials."""
        ...


class AnonymousAuthenticator:
    """Every caller is anonymous: public downloads only, when allowed."""

    def __init__(self, permissions: Permissions, *, allow_public_download: bool) -> None:
        self._anonymous = permissions.anonymous(allow_public_download=allow_public_download)

    async def authenticate(self, request: Request) -> Caller:
        return self._anonymous
