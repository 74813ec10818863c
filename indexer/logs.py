"""Logging that never writes a secret: mozlog JSON or plain text, redacted, frames only.

Every line goes through :func:`indexer.redaction.redact`, and exceptions are
written as their type, a redacted message and the traceback's frames: never
``repr`` of their arguments, which can hold whole response bodies. Used by
both command-line tools (the gateway adds request ids and summaries).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from types import TracebackType
from typing import Any, TextIO

from dockerflow.logging import MozlogFormatter, RequestIdLogFilter

from indexer.redaction import REDACTED, redact

LOG_FORMATS = ("mozlog", "text")
LOGGER_NAME = "tooltool"  # the mozlog "Logger" of every line
# Libraries that log request headers or signed URLs at DEBUG (botocore logs
# its Authorization headers): never below INFO, whatever the root level.
QUIET_LIBRARIES = (
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "aiohttp",
    "taskcluster",
    "mohawk",
    "httpx",
    "httpx2",
    "httpcore",
    "asyncio",
)
URL_LOGGING_LIBRARIES = frozenset({"httpx", "httpx2", "httpcore"})
MAX_FIELD = 2000  # characters of a field's value, or an error's message
# Not fields: the record's own attributes, and uvicorn's ANSI-coloured copy of its message.
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


def format_exception(
    exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
) -> tuple[str, str]:
    """An exception as (error, traceback) text that cannot carry a secret: its type and a
    redacted, shortened message; the frames' files, lines and code."""
    name = exc_type.__name__ if exc_type is not None else "Exception"
    error = f"{name}: {escape_controls(shortened(_safe_str(exc)))}"
    frames = "".join(traceback.format_tb(tb)) if tb is not None else ""
    return error, f"Traceback (most recent call last):\n{frames}{error}"


_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code != 0x09}
_CONTROLS |= {0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_controls(text: str) -> str:
    """`text` on one line: line breaks and other control characters as escapes, so that
    text from a request can never forge a log line or drive a terminal."""
    return text.translate(_CONTROLS)


def _safe_str(exc: BaseException | None) -> str:
    if isinstance(exc, UnicodeError):
        # str() of these is short, but their arguments hold the whole text.
        return f"{getattr(exc, 'reason', '')} at {getattr(exc, 'start', '?')}"
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not break logging
        return "(unprintable)"


class SafeMozlogFormatter(MozlogFormatter):
    """Dockerflow's mozlog JSON, with redacted strings and exceptions without their repr."""

    def convert_record(self, record: logging.LogRecord) -> dict[str, Any]:
        exc_info = record.exc_info
        record.exc_info = None
        try:
            out: dict[str, Any] = super().convert_record(record)
        finally:
            record.exc_info = exc_info
        fields = out["Fields"]
        fields.pop("color_message", None)
        if exc_info and exc_info[0] is not None:
            fields["error"], fields["traceback"] = format_exception(*exc_info)
        out["Fields"] = {key: _clean(value) for key, value in fields.items()}
        return out

    def format(self, record: logging.LogRecord) -> str:
        out = self.convert_record(record)
        line = json.dumps(out, default=repr)
        redacted = redact(line)
        if redacted == line or _is_json(redacted):
            return redacted
        # A pattern ran across two members: redact each text on its own instead.
        return json.dumps(_each_redacted(out), default=repr)


def redacted_json_text(text: str) -> str:
    """`text` as a JSON string, redacted as the formatter redacts it within a line:
    still one JSON string (all of it redacted if a pattern took a quote)."""
    encoded = json.dumps(text)
    redacted = redact(encoded)
    if redacted != encoded and not (_is_json(redacted) and redacted.startswith('"')):
        return f'"{REDACTED}"'
    return redacted


def _each_redacted(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(redacted_json_text(value))
    if isinstance(value, dict):
        return {key: _each_redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_each_redacted(item) for item in value]
    return value


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class SafeTextFormatter(logging.Formatter):
    """One plain line: time, level, logger, message, then the record's fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        exc_info, exc_text = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            line = escape_controls(super().format(record))
        finally:
            record.exc_info, record.exc_text = exc_info, exc_text
        fields = " ".join(
            f"{key}={_field(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and value is not None
        )
        if fields:
            line = f"{line} {fields}" if not line.endswith(": ") else line + fields
        if exc_info and exc_info[0] is not None:
            # Continuation lines, each marked, so none can pass for a record of its own.
            frames = format_exception(*exc_info)[1].splitlines()
            line += "".join(f"\n  | {frame}" for frame in frames)
        return redact(line)


def _field(value: Any) -> str:
    """A field's value for a text line: quoted when it holds a space, a quote or an equals
    sign, so that a value from a request can never pass for another field."""
    text = escape_controls(str(_clean(value)))
    if any(character in text for character in ' "=\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _clean(value: Any) -> Any:
    """A field's value, shortened. Whole lines are redacted once they are written; only
    a value cut short is redacted first, so that no secret is cut past recognition."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = value if isinstance(value, str) else repr(value)
    return shortened(text)


def shortened(text: str) -> str:
    """A field's text as the formatters write it: redacted and cut when over MAX_FIELD."""
    return text if len(text) <= MAX_FIELD else redact(text)[:MAX_FIELD]


class MozlogHandler(logging.StreamHandler):
    """Writes mozlog JSON lines; also takes lines already formatted (:meth:`write_line`)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        formatter = SafeMozlogFormatter(logger_name=LOGGER_NAME)
        self.setFormatter(formatter)
        self.addFilter(RequestIdLogFilter())
        # The members every line of this handler repeats, as the formatter writes them.
        self.identity = json.dumps(
            {
                "Logger": LOGGER_NAME,
                "Hostname": formatter.hostname,
                "EnvVersion": formatter.LOGGING_FORMAT_VERSION,
            }
        )[1:-1]
        self.pid = os.getpid()  # what a LogRecord would say, without a system call a line
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self.pid = os.getpid()

    def write_line(self, line: str, *, flush: bool = True) -> None:
        """Write one mozlog line built by the caller, as :meth:`emit` writes a record's
        (a failing stream is reported as logging reports it, never raised)."""
        try:
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(line + self.terminator)
                if flush:
                    self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "a line built by its logger"}))

    def flush_lines(self) -> None:
        """Flush lines written without flushing; a failing stream is reported as
        :meth:`emit` reports it, never raised."""
        try:
            self.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "lines written unflushed"}))


def make_handler(stream: TextIO | None = None, *, log_format: str = "mozlog") -> logging.Handler:
    """A handler writing `log_format` lines (with request ids) to `stream` (stdout)."""
    stream = sys.stdout if stream is None else stream
    if log_format == "mozlog":
        return MozlogHandler(stream)
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(SafeTextFormatter())
    return handler


def quiet_libraries() -> None:
    """Keep libraries that log credentials at DEBUG at INFO or above, and HTTP clients that
    log whole (signed) URLs at INFO at WARNING or above."""
    for name in QUIET_LIBRARIES:
        floor = logging.WARNING if name in URL_LOGGING_LIBRARIES else logging.INFO
        library = logging.getLogger(name)
        if library.getEffectiveLevel() < floor:
            library.setLevel(floor)


def configure_logging(
    *, level: int = logging.INFO, log_format: str = "mozlog", stream: TextIO | None = None
) -> None:
    """Send every record to `stream` (stdout), as mozlog JSON (production) or plain text."""
    root = logging.getLogger()
    root.handlers[:] = [make_handler(stream, log_format=log_format)]
    root.setLevel(level)
    quiet_libraries()
