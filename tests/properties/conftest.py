"""The gateway fixtures, for properties checked over HTTP too."""

from tests.gateway.conftest import gateway, make_gateway

__all__ = ["gateway", "make_gateway"]
