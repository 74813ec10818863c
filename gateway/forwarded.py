"""The host, port and scheme the client used, which Hawk MACs and signed URLs depend on.

``X-Forwarded-Host``, ``-Proto`` and ``-Port`` are believed only from the
proxies listed in ``TOOLTOOL_TRUSTED_PROXIES``; anyone else could forge them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import Scope

_DEFAULT_PORTS = {"http": 80, "https": 443}
# The headers a request's address is made of (what `target_of` reads).
ADDRESS_HEADERS = frozenset(
    {b"host", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port"}
)
_MAX_ADDRESSES = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Target:
    """Where the client sent its request."""

    scheme: str
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme == "https" and self.port == 443:
            return f"https://{host}"
        # Always explicit otherwise: the legacy client assumes 443 without one.
        return f"{self.scheme}://{host}:{self.port}"


class TrustedProxies:
    """The networks whose X-Forwarded-* headers are believed."""

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self._networks = tuple(networks)
        self._trusted: dict[str, bool] = {}  # by client address, bounded

    @classmethod
    def parse(cls, value: str) -> TrustedProxies:
        """Comma-separated addresses or CIDR networks; raises ValueError."""
        return cls(
            ipaddress.ip_network(item.strip(), strict=False)
            for item in value.split(",")
            if item.strip()
        )

    def is_trusted(self, address: str | None) -> bool:
        if address is None or not self._networks:
            return False
        trusted = self._trusted.get(address)
        if trusted is None:
            trusted = self._is_trusted(address)
            if len(self._trusted) >= _MAX_ADDRESSES:
                self._trusted.clear()
            self._trusted[address] = trusted
        return trusted

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv4 peer of a socket bound to "::"
        return any(ip in network for network in self._networks)

    def target(self, request: Request) -> Target:
        """The scheme, host and port as the client addressed them."""
        return self.target_of(request.scope)

    def target_of(self, scope: Scope) -> Target:
        """:meth:`target` of a request's ASGI scope (without building a Request)."""
        scheme = scope.get("scheme", "http")
        client = scope.get("client")
        headers = first_values(scope, ADDRESS_HEADERS)
        host_header = headers.get(b"host", "")
        forwarded_port: str | None = None
        if self.is_trusted(client[0] if client else None):
            scheme = _nearest(headers.get(b"x-forwarded-proto")) or scheme
            host_header = _nearest(headers.get(b"x-forwarded-host")) or host_header
            forwarded_port = _nearest(headers.get(b"x-forwarded-port"))
        host, port = split_host(host_header)
        if forwarded_port and forwarded_port.isascii() and forwarded_port.isdigit():
            value = int(forwarded_port[:6])
            port = value if 0 < value < 65536 else port
        scheme = scheme.lower() if scheme.lower() in _DEFAULT_PORTS else "http"
        if port is None:
            port = _DEFAULT_PORTS[scheme]
        return Target(scheme, host.lower(), port)


def split_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` or ``[v6]:port`` into its parts; an unusable port counts as none."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    port = int(port_text[:6]) if port_text.isascii() and port_text.isdigit() else None
    if port is not None and not 0 < port < 65536:
        port = None
    return host, port


def first_values(scope: Scope, names: frozenset[bytes]) -> dict[bytes, str]:
    """The first value of each of the headers `names` (lowercase) a request has, as
    Starlette's ``headers.get`` reads them, in one pass (a tenth of what a ``Headers``
    costs, on the paths that read headers for every request)."""
    found: dict[bytes, str] = {}
    for name, value in scope.get("headers", ()):
        if name in names and name not in found:
            found[name] = value.decode("latin-1")
    return found


def _nearest(value: str | None) -> str | None:
    # The last value is the one the nearest (trusted) proxy set or appended.
    if value is None:
        return None
    return value.split(",")[-1].strip() or None
