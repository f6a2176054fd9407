"""Headless Debian Chromium driven by Selenium through Debian's chromedriver.

The flags keep Chromium off the network (this machine has none: background services would
only log refused connections); the performance log records every request the page makes so
a test can prove none leaves the server's origin.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from devtools.services import servers

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def ensure_chromium() -> str:
    """Debian's chromium and chromedriver, apt-installed when missing (as other servers are)."""
    servers.apt_install("chromium", ["chromium", "chromium-driver"])
    return servers.apt_install("chromedriver", ["chromium", "chromium-driver"])


def chromium_or_skip() -> str:
    """ensure_chromium(), or skip the module's browser tests (fail them where CI requires
    every server: TUTORLEDGER_REQUIRE_SERVICES=1)."""
    try:
        return ensure_chromium()
    except Exception as exc:
        if os.environ.get("TUTORLEDGER_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Chromium unavailable: {exc}")
        pytest.skip(f"Chromium unavailable: {exc}")


def start_chrome(driver_path: str, downloads: Path) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='tl-chromium-')}")
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    opts.add_experimental_option("prefs", prefs)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    return driver


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """Every URL the browser asked for since the last call (the log is drained by reading)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot(driver: webdriver.Chrome, name: str, full_page: bool = True) -> Path:
    """Save build/screenshots/<name>.png; full_page grows the window to the page's height."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = driver.get_window_size()
    if full_page:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(size["width"], min(int(height) + 40, 12000))
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    return path


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Poll `check` until it returns something truthy; generous, for a loaded 2-core machine."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


# Every row of a table: its data-key and the exact value behind each figure cell.
_TABLE_JS = """
const table = document.getElementById(arguments[0]);
return Array.from(table.tBodies[0].rows).map(row => ({
  key: row.dataset.key || null,
  cells: Object.fromEntries(Array.from(row.querySelectorAll('[data-col]'))
    .map(c => [c.dataset.col, c.dataset.value]))
}));
"""


def table_rows(driver: webdriver.Chrome, table_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = driver.execute_script(_TABLE_JS, table_id)
    return rows


def summary(driver: webdriver.Chrome, table_id: str) -> dict[str, float | None]:
    """A one-column summary table as {figure: value} (blank = null)."""
    out: dict[str, float | None] = {}
    for row in table_rows(driver, table_id):
        out.update({k: None if v == "" else float(v) for k, v in row["cells"].items()})
    return out


def by_key(driver: webdriver.Chrome, table_id: str) -> dict[str, dict[str, float | None]]:
    return {
        row["key"]: {k: None if v == "" else float(v) for k, v in row["cells"].items()}
        for row in table_rows(driver, table_id)
    }
