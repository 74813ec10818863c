"""``change-visibility`` and ``delete``: one ``PATCH file/sha512/<digest>`` on the first
server, with the operation the legacy client sends. They need the ``…/manage``
scope; the digest is checked here before anything is sent."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from tooltool_client import manifest
from tooltool_client.api import problem
from tooltool_client.errors import ServerError, UsageError

if TYPE_CHECKING:
    from tooltool_client.cli import Context

logger = logging.getLogger("tooltool")


def change_visibility(context: Context) -> bool:
    digest = _digest(context, "change-visibility")
    visibility = context.options.visibility
    if not visibility:
        raise UsageError("change-visibility command requires a visibility option")
    answer = _patch(
        context, "change-visibility", digest, {"op": "set_visibility", "visibility": visibility}
    )
    logger.info("%s: visibility set to %s%s", digest, visibility, _instances(answer))
    return True


def delete(context: Context) -> bool:
    digest = _digest(context, "delete")
    answer = _patch(context, "delete", digest, {"op": "delete_instances"})
    logger.info("%s: instances deleted%s", digest, _instances(answer))
    return True


def _digest(context: Context, command: str) -> str:
    digest = context.options.digest
    if not digest:
        raise UsageError(f"{command} command requires a digest option")
    return manifest.check_digest(digest)


def _patch(context: Context, command: str, digest: str, operation: dict[str, str]) -> Any:
    """The operation applied by the first server; its answer (the file), parsed."""
    status, _, body = context.servers[0].call("PATCH", f"file/sha512/{digest}", data=[operation])
    if status != 200:
        raise ServerError(f"{command} refused: {problem(status, body)}")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _instances(answer: Any) -> str:
    """The regions holding the file after the change, as the server says."""
    instances = answer.get("instances") if isinstance(answer, dict) else None
    if not isinstance(instances, list) or not all(
        isinstance(i, str) and i.isprintable() for i in instances
    ):
        return ""
    return f" (instances: {', '.join(instances) or 'none'})"
