"""Request ids on every record and response, and one summary line per request.

The formatters (mozlog JSON or text, always redacted) are :mod:`indexer.logs`'s.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from dockerflow.logging import request_id_context
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import problem_response
from indexer.logs import configure_logging

__all__ = ["RequestIdMiddleware", "configure_logging"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
summary_logger = logging.getLogger("request.summary")
logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Gives each request an id (the caller's X-Request-Id when well formed), logs a summary.

    Wraps the whole Starlette app, outside its error middleware, so that 500
    answers carry the id too and their log lines are written while it is set.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_context.set(request_id)
        started = time.perf_counter()
        status = 500
        is_started = is_logged = False

        def log_summary() -> None:
            nonlocal is_logged
            is_logged = True
            fields: dict[str, Any] = {
                "method": scope["method"],
                "path": scope.get("path", ""),  # redacted, then shortened, by the formatter
                "code": status,
                "t": round((time.perf_counter() - started) * 1000, 2),
                "rid": request_id,
            }
            summary_logger.info("", extra=fields)

        async def send_with_id(message: Message) -> None:
            nonlocal status, is_started
            if message["type"] == "http.response.start":
                status = message["status"]
                is_started = True
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode("ascii")),
                ]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Before the last part goes out, so the line is written when the caller has it.
                log_summary()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Starlette's error middleware answers (through the handler that logs the
            # error) and then re-raises for the server to log again, traceback and all.
            if not is_started:
                logger.exception("unexpected error before any answer")
                await problem_response(500)(scope, receive, send_with_id)
        finally:
            if not is_logged:
                log_summary()
            request_id_context.reset(token)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex
