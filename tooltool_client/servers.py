"""Which servers to ask: ``--url`` (repeatable, tried in order), else ``$TOOLTOOL_HOST``
(through ``$TASKCLUSTER_PROXY_URL`` inside a task), as the legacy client chose."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from tooltool_client.errors import UsageError

DEFAULT_HOST = "tooltool.mozilla-releng.net"


def base_urls(urls: Sequence[str] | None, environ: Mapping[str, str]) -> list[str]:
    """The base URLs, each ending with ``/`` (so relative paths join under a prefix)."""
    if not urls:
        host = environ.get("TOOLTOOL_HOST") or DEFAULT_HOST
        proxy = environ.get("TASKCLUSTER_PROXY_URL")
        urls = [f"{proxy.rstrip('/')}/{host}" if proxy else f"https://{host}"]
    checked = []
    for url in urls:
        try:
            parts = urlsplit(url)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 - raises for a port out of range
        except ValueError:  # "http://[::1", "http://h:99999"
            usable = False
        if not usable:
            raise UsageError(f"--url {url!r} is not an http or https URL")
        if "@" in parts.netloc:
            # Never sent (credentials go in --authentication-file), and the URL is printed
            # with every message about its server.
            raise UsageError(
                "a --url holds a user name or password, which is never sent:"
                " give credentials with --authentication-file"
            )
        checked.append(url if url.endswith("/") else url + "/")
    return checked
