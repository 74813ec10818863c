"""What the browser tests share: Debian's Chromium driven by Playwright (its own browser
download is not reachable), the flags it runs with, and the checks every page gets."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# As the machine's notes advise: no background connections (the network is closed).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"desktop": (1280, 800), "phone": (360, 740)}


def require_chromium() -> None:
    """Skip the calling test module without Debian's chromium (fail, on CI)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            raise RuntimeError(
                f"CI needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"
            )
        pytest.skip("needs Debian's chromium: apt-get install chromium", allow_module_level=True)


def watch_console(page: Any) -> list[str]:
    """The console errors, page errors and requests to other origins `page` will make."""
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            problems.append(message.text)

    def on_request(request: Any) -> None:
        # Fonts, scripts and styles all come from the site: nothing from elsewhere.
        if not request.url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            problems.append(f"a request to another origin: {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", on_request)
    return problems


def visit(page: Any, url: str, name: str, problems: list[str]) -> None:
    """Load `url`, check it loaded cleanly and fits the width, and screenshot it."""
    response = page.goto(url)
    assert response is not None
    assert response.status == 200, name
    assert problems == [], (name, problems)
    assert overflow(page) <= 1, (name, overflow(page))  # readable without scrolling sideways
    screenshot(page, name)


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def overflow(page: Any) -> int:
    """How far the page is wider than the window, in CSS pixels."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))
