"""The README's threat model points each claim at a test: every pointer must name a real test.

A pointer is a code span such as ``gateway/test_auth.py::…::test_replayed_nonce``
(a path under ``tests/``, ``…`` standing for a class), ``gateway/test_http_limits.py``
(a whole module), or ``…::test_rotation`` (a test of the module named before it).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTIONS = ("## Threat model",)
POINTER = re.compile(r"`(?P<path>[\w/]+\.py)?(?P<names>…?(?:::(?:…|\w+))*)`")


def section(text: str, heading: str) -> str:
    after = text.split(f"\n{heading}\n", 1)[1]
    return after.split("\n## ", 1)[0]


def pointers(text: str) -> list[tuple[str, str | None]]:
    """(module, test name or None), with ``…::name`` resolved against the module before it."""
    found: list[tuple[str, str | None]] = []
    module: str | None = None
    for match in POINTER.finditer(text):
        path, names = match["path"], match["names"]
        if path is None and not names.startswith("…::"):
            continue
        if path is not None:
            module = path
        assert module is not None, f"{match[0]} names no module, and none came before it"
        last = names.rsplit("::", 1)[-1] if names else None
        found.append((module, None if last in (None, "…") else last))
    return found


def missing(text: str) -> list[str]:
    """What the pointers of `text` name that no test file or test defines."""
    problems = []
    for module, name in pointers(text):
        source = ROOT / "tests" / module
        if not source.is_file():
            problems.append(f"tests/{module} does not exist")
        elif name is not None:
            definition = re.compile(rf"^\s*(?:async )?def {re.escape(name)}\(", re.MULTILINE)
            if not definition.search(source.read_text(encoding="utf-8")):
                problems.append(f"tests/{module} has no test {name}")
    return problems


def test_every_pointer_names_a_test() -> None:
    text = README.read_text(encoding="utf-8")
    for heading in SECTIONS:
        claims = section(text, heading)
        assert len(pointers(claims)) >= 20, f"{heading}: expected its claims to point at tests"
        assert missing(claims) == [], heading


def test_a_missing_test_or_module_is_caught() -> None:
    text = (
        "`gateway/test_auth.py::…::test_replayed_nonce`, `…::test_no_such_thing`,"
        " `gateway/test_nowhere.py`"
    )
    assert pointers(text) == [
        ("gateway/test_auth.py", "test_replayed_nonce"),
        ("gateway/test_auth.py", "test_no_such_thing"),
        ("gateway/test_nowhere.py", None),
    ]
    assert missing(text) == [
        "tests/gateway/test_auth.py has no test test_no_such_thing",
        "tests/gateway/test_nowhere.py does not exist",
    ]
