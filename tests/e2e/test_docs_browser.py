"""/docs and /redoc in a real browser (headless Debian Chromium) against `tutorledger serve`.

Both render every operation of the OpenAPI document from the package's own assets: no
request leaves the server's origin (Chromium's network log), and the console shows no
content-security-policy violation or other error.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from browser import (
    chromium_or_skip,
    console_errors,
    requested_urls,
    screenshot,
    start_chrome,
    wait_for,
)
from builders import write_keys
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from served import Server, start_server, stop

pytestmark = pytest.mark.e2e

KEY = "docs-admin-key-00000000000"
NETWORK = ("http", "https", "ws", "wss", "ftp")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("docs")
    keys = write_keys(tmp / "keys.json", [{"key": KEY, "role": "admin", "districts": ["*"]}])
    served = start_server(tmp, keys, "docs")
    yield served
    stop(served)


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver_path = chromium_or_skip()
    driver = start_chrome(driver_path, tmp_path_factory.mktemp("downloads"))
    yield driver
    driver.quit()


def _operations(server: Server) -> list[tuple[str, str]]:
    """(METHOD, path) of every operation the served OpenAPI document lists."""
    paths = httpx.get(f"{server.base_url}/openapi.json", timeout=60).json()["paths"]
    methods = ("get", "put", "post", "delete", "patch")
    return sorted((m.upper(), p) for p, item in paths.items() for m in methods if m in item)


def _left_the_origin(urls: list[str], origin: str) -> list[str]:
    """Network requests (not data:/blob: or the browser's own chrome:// pages) elsewhere."""
    return [u for u in urls if urlsplit(u).scheme in NETWORK and not u.startswith(origin + "/")]


def _open(driver: WebDriver, url: str) -> None:
    driver.get("about:blank")
    requested_urls(driver), console_errors(driver)  # drain: only this page's entries count
    driver.get(url)


def test_swagger_ui_lists_every_operation_offline(chrome: WebDriver, server: Server) -> None:
    wanted = _operations(server)
    _open(chrome, f"{server.base_url}/docs")

    def listed() -> list[tuple[str, str]]:
        blocks = chrome.find_elements(By.CSS_SELECTOR, ".opblock .opblock-summary")
        return sorted(
            (
                b.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
                b.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path")
                or "",
            )
            for b in blocks
        )

    wait_for(lambda: len(listed()) == len(wanted), "Swagger UI's operations")
    assert listed() == wanted
    screenshot(chrome, "docs-swagger-ui", full_page=False)
    assert _left_the_origin(requested_urls(chrome), server.base_url) == []
    assert console_errors(chrome) == []


def test_redoc_renders_every_operation_offline(chrome: WebDriver, server: Server) -> None:
    wanted = _operations(server)
    _open(chrome, f"{server.base_url}/redoc")

    def sections() -> int:
        return len(chrome.find_elements(By.CSS_SELECTOR, "[data-section-id^='operation/']"))

    wait_for(lambda: sections() == len(wanted), "ReDoc's operations")
    title = chrome.find_element(By.CSS_SELECTOR, ".api-info h1").text
    assert title.startswith("tutorledger")
    # Styled by its own (nonce-carrying) style elements: the menu is laid out, not raw text.
    menu = chrome.find_element(By.CSS_SELECTOR, ".menu-content")
    assert menu.value_of_css_property("position") in ("sticky", "fixed")
    screenshot(chrome, "docs-redoc", full_page=False)
    assert _left_the_origin(requested_urls(chrome), server.base_url) == []
    assert console_errors(chrome) == []


def test_the_guard_sees_a_request_elsewhere() -> None:
    origin = "http://127.0.0.1:8000"
    elsewhere = ["https://cdn.jsdelivr.net/x.js", "http://127.0.0.1:9/"]
    urls = [f"{origin}/docs", "data:image/png;base64,AA", f"blob:{origin}/x", "chrome://x/"]
    urls += elsewhere
    assert _left_the_origin(urls, origin) == elsewhere
