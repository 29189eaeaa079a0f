"""Launch Debian's Chromium through playwright, offline: loopback and files only, other requests aborted.

`scripts/install_browser.sh` installs /usr/bin/chromium; `playwright install` (a download) is never used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = Path(os.environ.get("GLAN_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", ""}


def _is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in {"file", "data", "blob", "about"} or parsed.hostname in LOCAL_HOSTS


@contextmanager
def browser_page(viewport: tuple[int, int] = (1280, 900)) -> Iterator[object]:
    """A fresh page in headless Chromium that cannot reach anything but loopback and local files."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: run scripts/install_browser.sh")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.route("**/*", lambda r: r.continue_() if _is_local(r.request.url) else r.abort())
            yield page
        finally:
            browser.close()
