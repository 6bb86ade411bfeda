"""A real browser for the dashboard tests: Debian's Chromium driven by
Playwright for Python (its own driver; no browser download).

Where CI=true a missing browser or Playwright fails the run; elsewhere the
browser tests skip with the reason.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 768}
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"


def require_browser() -> None:
    """Skips (fails where CI=true) when Chromium or Playwright is missing."""
    why = ""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        why = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "Playwright for Python is not installed (pip install 'uba[dev]')"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests are required in CI: {why}")
        pytest.skip(why)


@contextmanager
def chromium_context(user_data_dir: Path, **options):
    """A headless Chromium with a fresh profile, laptop-sized, UTC, en-US,
    light theme: one browser context; tests open their own pages in it.
    `options` go to Playwright's launch_persistent_context."""
    from playwright.sync_api import sync_playwright

    shutil.rmtree(user_data_dir, ignore_errors=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=LAPTOP,
            locale="en-US",
            timezone_id="UTC",
            color_scheme="light",
            accept_downloads=True,
            **options,
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


@dataclass
class PageWatch:
    """What went wrong in a page: console errors, uncaught exceptions,
    requests that failed or answered an error status."""

    problems: list[str] = field(default_factory=list)
    watching: bool = True

    def attach(self, page) -> PageWatch:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self._add(f"uncaught: {exc}"))
        page.on(
            "requestfailed",
            lambda req: self._add(f"request failed: {req.method} {req.url}: {req.failure}"),
        )
        page.on("response", self._response)
        return self

    def _add(self, text: str) -> None:
        if self.watching:
            self.problems.append(text)

    def _console(self, message) -> None:
        if message.type in ("error", "assert"):
            self._add(f"console {message.type}: {message.text} ({message.location.get('url', '')})")

    def _response(self, response) -> None:
        if response.status >= 400:
            self._add(f"HTTP {response.status}: {response.request.method} {response.url}")

    def assert_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)

    def stop(self) -> None:
        self.watching = False
