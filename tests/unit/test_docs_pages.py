"""/docs and /redoc: vendored assets only, a policy that allows the origin only.

The browser half (the pages render, nothing leaves the origin, no policy violation) is
tests/e2e/test_docs_browser.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from tutorledger.api.app import create_app
from tutorledger.api.http.docs_pages import ASSETS, PREFIX
from tutorledger.infra.settings import Settings

VENDOR = ASSETS / "vendor"
PAGES = ("/docs", "/redoc")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """The app without its lifespan: the docs need no store."""
    tmp = tmp_path_factory.mktemp("docs")
    settings = Settings(event_store=f"sqlite:///{tmp}/l.db", var_dir=tmp / "var")
    return TestClient(create_app(settings))


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._inside: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._inside = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._inside = None

    def handle_data(self, data: str) -> None:
        if self._inside and data.strip():
            self.inline.append(data)


def _parse(html: str) -> _Tags:
    tags = _Tags()
    tags.feed(html)
    return tags


@pytest.mark.parametrize("folder", ["swagger-ui", "redoc"])
def test_the_vendored_release_is_the_recorded_one(folder: str) -> None:
    record = json.loads((VENDOR / folder / "VENDOR.json").read_text())
    assert (VENDOR / folder / record["licence_file"]).stat().st_size > 500
    for name, digest in record["files"].items():
        data = (VENDOR / folder / name).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, name
    bundle = next(n for n in record["files"] if n.endswith(".js"))
    assert f'"{record["version"]}"'.encode() in (VENDOR / folder / bundle).read_bytes()
    for name, patch in record.get("patches", {}).items():
        data = (VENDOR / folder / name).read_bytes()
        assert data.count(patch["to"].encode()) == 1, "the patch is applied once"
        upstream = data.replace(patch["to"].encode(), patch["from"].encode())
        assert "sha256:" + hashlib.sha256(upstream).hexdigest() == patch["upstream_sha256"]


def test_no_shipped_asset_names_another_host_to_load_from() -> None:
    """Only the patched-out ReDoc logo ever loaded from elsewhere; keep it that way."""
    assert b"cdn.redoc.ly" not in (VENDOR / "redoc" / "redoc.standalone.js").read_bytes()
    for own in ASSETS.glob("*.*"):
        assert not re.search(r"https?://", own.read_text()), own.name


@pytest.mark.parametrize("page", PAGES)
def test_pages_load_only_packaged_assets_with_no_inline_code(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    tags = _parse(response.text)
    assert tags.inline == [], "no inline script or style"
    urls = [a.get("src") or a.get("href") for t, a in tags.tags if t in ("script", "link")]
    assert urls and all(u and u.startswith(PREFIX + "/") for u in urls), urls
    assert not any("style" in attrs or any(k.startswith("on") for k in attrs)
                   for _, attrs in tags.tags)  # fmt: skip
    for url in urls:
        assert url is not None
        asset = client.get(url, headers={"Accept-Encoding": "gzip"})
        assert asset.status_code == 200, url
        if url.endswith("bundle.js") or url.endswith("standalone.js"):
            assert asset.headers.get("content-encoding") == "gzip", url


@pytest.mark.parametrize("page", PAGES)
def test_the_policy_allows_the_origin_only(client: TestClient, page: str) -> None:
    first, second = client.get(page), client.get(page)
    policy = first.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    for forbidden in ("'unsafe-inline'", "'unsafe-eval'", "http:", "https:", "*"):
        assert forbidden not in policy.split(), forbidden
    assert not re.search(r"https?://", policy)
    nonce = re.search(r"'nonce-([^']+)'", directives["style-src"])
    assert nonce is not None
    if page == "/redoc":
        assert f'nonce="{nonce[1]}"' in first.text
    assert second.headers["content-security-policy"] != policy, "a fresh nonce per answer"


def test_the_openapi_document_the_pages_read_is_served(client: TestClient) -> None:
    for page, attribute in (("/docs", "data-openapi-url"), ("/redoc", "data-spec-url")):
        found = re.search(rf'{attribute}="([^"]+)"', client.get(page).text)
        assert found is not None
        assert client.get(found[1]).json()["info"]["title"] == "tutorledger"


def test_every_shipped_asset_is_used_or_a_licence(client: TestClient) -> None:
    """Nothing dead ships: each file is referenced by a page, or is licence text/record."""
    pages = " ".join(client.get(p).text for p in PAGES)
    for path in ASSETS.rglob("*"):
        if path.is_file() and not re.search(r"LICENSE|NOTICE|VENDOR\.json", path.name):
            assert f"{PREFIX}/{path.relative_to(ASSETS).as_posix()}" in pages, path.name
