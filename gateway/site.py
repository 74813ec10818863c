"""The browsable site: ``/`` serves ``site/public/``, ``/internal/`` serves ``site/internal/``.

Pages are what the indexer rendered into the store; the gateway only reads
them, with their ETag (``If-None-Match`` answers 304) and a short
``Cache-Control``. The internal view needs ``…/download/internal``: a browser
without it gets a page saying how to get a token, not a bare 401 body.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.auth import Authenticator, Permissions
from gateway.errors import NotFound
from indexer.site.publish import content_type, site_key
from indexer.stores import InvalidKey, ObjectNotFound, Store

# What the renderer makes: listings, pages per file, batch and uploader, assets, and the
# search bundle.
SECTIONS = (
    "files",
    "batches",
    "uploaders",
    "f",
    "b",
    "u",
    "assets",
    "pagefind",
    "pagefind-archive",
)
_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*/?")
MAX_AGE = 60

SIGN_IN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Internal files · ToolTool</title></head>
<body><main>
<h1>Internal files need a token</h1>
<p>This view lists internal files as well as public ones. It needs the
<code>{scope}</code> scope.</p>
<p>Exchange your Taskcluster credentials for a token at <code>POST /token</code>
(see the README's "A token with curl"), then send it as
<code>Authorization: Bearer &lt;token&gt;</code>, with a browser extension
that sets headers, or fetch pages with curl.</p>
<p><a href="../">The public site</a> needs no token.</p>
</main></body></html>
"""


class Site:
    def __init__(
        self, *, store: Store, authenticator: Authenticator, permissions: Permissions
    ) -> None:
        self._store = store
        self._authenticator = authenticator
        self._permissions = permissions

    def routes(self) -> Sequence[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/", self._serving(""), methods=["GET", "HEAD"]),
            Route("/index.html", self._serving("index.html"), methods=["GET", "HEAD"]),
            # Relative links need the slash: "/internal" would resolve them to the public site.
            Route(
                "/internal", lambda request: RedirectResponse("internal/"), methods=["GET", "HEAD"]
            ),
            Route("/internal/{path:path}", self.internal, methods=["GET", "HEAD"]),
        ]
        routes += [
            Route(f"/{section}/{{path:path}}", self._serving(section), methods=["GET", "HEAD"])
            for section in SECTIONS
        ]
        return routes

    def _serving(self, section: str) -> Callable[[Request], Awaitable[Response]]:
        async def public(request: Request) -> Response:
            rest = request.path_params.get("path")
            path = section if rest is None else f"{section}/{rest}"
            return await self._page(request, "public", path)

        return public

    async def internal(self, request: Request) -> Response:
        caller = await self._authenticator.authenticate(request)
        if not self._permissions.may_download(caller, ["internal"]):
            page = SIGN_IN.format(scope=self._permissions.download("internal"))
            status = 401 if caller.is_anonymous else 403
            return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})
        return await self._page(request, "internal", request.path_params["path"])

    async def _page(self, request: Request, view: str, path: str) -> Response:
        if path == "" or path.endswith("/"):
            path += "index.html"
        if _PATH.fullmatch(path) is None or ".." in path:
            raise NotFound()
        try:
            data, info = await run_in_threadpool(self._store.get, site_key(view, path))
        except (ObjectNotFound, InvalidKey):
            raise NotFound() from None
        cache = "public" if view == "public" else "private"
        headers = {
            "ETag": info.etag,
            "Cache-Control": f"{cache}, max-age={MAX_AGE}",
            "Vary": "Authorization",
        }
        if info.etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=content_type(path), headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
