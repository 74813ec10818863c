"""The CloudFront settings of bench/fastpath.py's CloudFront row, when the gateway has them.

Downloads can redirect to signed CloudFront URLs, configured by ``CLOUDFRONT_URL``,
``CLOUDFRONT_KEY_ID`` and ``CLOUDFRONT_PRIVATE_KEY`` (an RSA key in PEM, made here
with ``cryptography``). The row runs when ``gateway.settings.Settings`` takes them
in, that is when the settings it reads hold the URL; the key is offered as PEM text
and, should that be refused, as the path of a PEM file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HOST = "d111111abcdef8.cloudfront.net"
URL = f"https://{HOST}"
KEY_ID = "K2JCJMDEHXQW5F"


def settings(base: Mapping[str, str], scratch: Path) -> dict[str, str] | str:
    """`base` with CloudFront settings the gateway accepts, or why there are none."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from gateway.settings import Settings
    from indexer.config import SettingsError

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem_file = scratch / "cloudfront-key.pem"
    pem_file.write_bytes(pem)
    reason = "gateway.settings.Settings reads no CLOUDFRONT_URL"
    for private_key in (pem.decode(), str(pem_file)):
        environ = {
            **base,
            "CLOUDFRONT_URL": URL,
            "CLOUDFRONT_KEY_ID": KEY_ID,
            "CLOUDFRONT_PRIVATE_KEY": private_key,
        }
        try:
            read = Settings.from_environ(environ)
        except SettingsError as exc:
            reason = f"the settings refused: {exc}"
            continue
        if _holds(read):
            return environ
    return f"not available ({reason})"


def _holds(value: Any) -> bool:
    """Whether the CloudFront host is somewhere in the settings `value` (dataclasses,
    containers such as a split URL, text)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_holds(getattr(value, item.name)) for item in dataclasses.fields(value))
    if isinstance(value, tuple | list | frozenset | set):
        return any(_holds(item) for item in value)
    if isinstance(value, Mapping):
        return any(_holds(item) for item in value.values())
    return isinstance(value, str) and HOST in value
