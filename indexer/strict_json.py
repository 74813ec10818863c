"""Strict JSON: what a request body or a stored record must be before anything trusts it.

Python's ``json`` accepts more than JSON text that can be answered again:
``NaN`` and ``Infinity`` (Starlette refuses to render them), lone surrogate
escapes such as ``"\\udfff"`` (no UTF-8 encoder takes them), nesting deep
enough to exhaust the stack, integers too long to convert. Each becomes a
:class:`StrictJsonError` here, one ``ValueError`` for the callers to map.
"""

from __future__ import annotations

import json
from typing import Any


class StrictJsonError(ValueError):
    """Not JSON that every reader can use; the message says why (never echoing it)."""


class NotUnicodeText(StrictJsonError):
    """JSON holding a string (a key or a value) that is not valid Unicode."""


def _no_constants(name: str) -> Any:
    raise StrictJsonError(f"{name} is not a JSON number")


def loads_strict(raw: bytes | str) -> Any:
    """The JSON document `raw` holds, refused if it is not strictly valid JSON text."""
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except StrictJsonError:
        raise
    except RecursionError:
        raise StrictJsonError("nested too deeply") from None
    except UnicodeDecodeError:
        raise StrictJsonError("not UTF-8") from None
    except ValueError as exc:  # JSONDecodeError, and integers past the digit limit
        raise StrictJsonError(f"not JSON ({str(exc)[:100]})") from None
    check_text(data)
    return data


def check_text(data: Any) -> None:
    """Refuse a document holding a string (a key or a value) that is not valid Unicode."""
    try:
        json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise NotUnicodeText("holds text that is not valid Unicode") from None
    except RecursionError:
        raise StrictJsonError("nested too deeply") from None
    except ValueError:  # a number past a double's range (1e400), read as infinity
        raise StrictJsonError("holds a number out of range") from None
