"""Building the gateway's identity provider and token service from its settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from gateway.auth import Permissions
from gateway.hawk import HawkVerifier
from gateway.identity import (
    ClientsFile,
    IdentityProvider,
    TaskclusterProvider,
    ensure_clients_file,
)
from gateway.settings import Settings
from gateway.tokens import TokenService
from indexer.config import SettingsError, secret_file

logger = logging.getLogger(__name__)

# Hidden: the local store never lists nor serves dot files in its directory.
CLIENTS_FILE = ".clients.json"
JWT_SECRET_FILE = ".jwt-secret"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who may call, and how their tokens are signed."""

    provider: IdentityProvider
    tokens: TokenService


def build_credentials(settings: Settings) -> Credentials:
    """The provider and token service `settings` configure; SettingsError when incomplete."""
    return Credentials(_provider(settings), _tokens(settings))


def _provider(settings: Settings) -> IdentityProvider:
    auth = settings.auth
    if auth.identity_provider == "taskcluster":
        assert auth.taskcluster_root_url is not None
        return TaskclusterProvider(auth.taskcluster_root_url, timeout=auth.taskcluster_timeout)
    path = auth.clients_file
    if path is None:
        if not settings.stores.is_local:
            raise SettingsError(
                "TOOLTOOL_CLIENTS_FILE: required with S3_REGIONS unless TASKCLUSTER_ROOT_URL is set"
            )
        path = settings.stores.data_dir / CLIENTS_FILE
        created = ensure_clients_file(path, Permissions(settings.scope_prefix).all)
        if created is not None:
            logger.warning(
                "created a development client %s holding every tooltool scope;"
                " its credentials are in %s",
                created,
                path.resolve(),
            )
        else:
            logger.info("clients (credentials) are read from %s", path.resolve())
    verifier = HawkVerifier(skew=auth.hawk_skew, nonce_cache_bytes=auth.hawk_nonce_cache_bytes)
    return ClientsFile.load(path, verifier=verifier)


def _tokens(settings: Settings) -> TokenService:
    auth = settings.auth
    options = {
        "issuer": auth.jwt_issuer,
        "audience": auth.jwt_audience,
        "lifetime": auth.token_lifetime,
        "max_lifetime": auth.token_max_lifetime,
    }
    if auth.jwt_algorithm != "HS256":
        assert auth.jwt_private_key is not None
        return TokenService.asymmetric(
            auth.jwt_algorithm,
            _read(auth.jwt_private_key, "TOOLTOOL_JWT_PRIVATE_KEY"),
            [
                _read(path, "TOOLTOOL_JWT_PREVIOUS_PUBLIC_KEYS")
                for path in auth.jwt_previous_public_keys
            ],
            **options,
        )
    secret = auth.jwt_secret
    if secret is None:
        if not settings.stores.is_local:
            raise SettingsError(
                "TOOLTOOL_JWT_SECRET: required with S3_REGIONS (every replica needs the same one)"
            )
        secret = secret_file(settings.stores.data_dir / JWT_SECRET_FILE, "TOOLTOOL_JWT_SECRET")
    return TokenService.hmac(secret, **options)


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot read {path}: {exc.strerror}") from None
