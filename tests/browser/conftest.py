"""A headless Chromium for the browser tests, and what they read from a page.

The browser is Debian's ``chromium`` with its ``chromedriver`` (``make system-deps``), driven by
selenium (the dev extra); where any of them is missing the tests skip with the reason, which a strict
run (CI, ``MEMDIET_STRICT_SKIPS=1``) turns into a failure. Selenium is given the driver's path, so it
never looks for a browser of its own on the network.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

#: Where Debian installs them; PATH is searched first.
CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER_NAMES = ("chromedriver",)
WINDOW = (1400, 1000)
#: Seconds a page may take to draw every figure before the test fails (a loaded 2-core machine
#: takes about 8 s for the full report; see docs/VIEWER.md for the measured figures).
DRAW_TIMEOUT_S = 60


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium (one per session), its console log kept."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = _which(CHROMIUM_NAMES), _which(CHROMEDRIVER_NAMES)
    if chromium is None or chromedriver is None:
        pytest.skip("headless browser test: Debian's chromium and chromedriver are not installed (make system-deps)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: Any, path: Path) -> dict[str, Any]:
    """Load ``path`` from disk and wait until every figure is drawn; return the page's own report
    (``openMs``: milliseconds from navigation until the figures on screen were drawn, ``allDrawnMs``,
    ``errors``) with ``console``: the browser log's entries for this load."""
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(Path(path).resolve().as_uri())
    deadline = time.monotonic() + DRAW_TIMEOUT_S
    state = None
    while time.monotonic() < deadline:
        state = driver.execute_script("const p = window.memdietPage; return p && p.allDrawn ? "
                                      "{openMs: p.openMs, allDrawnMs: p.allDrawnMs, errors: p.errors} : null")
        if state:
            break
        time.sleep(0.05)
    assert state, f"{path}: not every figure was drawn within {DRAW_TIMEOUT_S} s"
    state["console"] = driver.get_log("browser")
    return state


def console_errors(state: dict[str, Any]) -> list[str]:
    """The browser log's errors (level SEVERE), and the page's own."""
    return [entry["message"] for entry in state["console"] if entry["level"] == "SEVERE"] + list(state["errors"])


def page_data(driver: Any) -> dict[str, Any]:
    """The page's data block, as its script reads it."""
    return json.loads(driver.execute_script("return document.getElementById('memdiet-data').textContent"))
