"""Real headless Chromium for the dashboard tests: Debian's browser, driven by Playwright.

Never a downloaded browser build: Playwright launches the `chromium` the machine has
(scripts/setup installs it), and a missing one fails the run instead of skipping. Each test
gets a fresh browser context (its own storage), and `Screens` saves screenshots under
`test-artifacts/` for people to look at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.helpers.processes import require_tool

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Headless as root in a closed network: no sandbox, no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """The machine's Chromium (or $CHROMIUM), headless, until the block ends."""
    executable = os.environ.get("CHROMIUM") or require_tool("chromium")
    with sync_playwright() as playwright:
        # launch() gives the browser a fresh temporary --user-data-dir of its own.
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class Screens:
    """Opens pages in fresh contexts and saves named screenshots as test artefacts."""

    def __init__(self, browser: Browser, test_name: str) -> None:
        self.browser = browser
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    def page(self, width: int = 1280, height: int = 900, poll_seconds: int = 1) -> Page:
        """A page whose dashboard polls every `poll_seconds` (set before any script runs)."""
        context = self.browser.new_context(viewport={"width": width, "height": height})
        context.add_init_script(
            "if (!localStorage.getItem('job-exporter.settings')) localStorage.setItem("
            f"'job-exporter.settings', JSON.stringify({{pollSeconds: {poll_seconds}}}))"
        )
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page

    def shot(self, page: Page, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.prefix}-{name}.png"
        page.evaluate("window.scrollTo(0, 0)")  # a full-page shot keeps the sticky bar on top
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        for context in self.contexts:
            context.close()
