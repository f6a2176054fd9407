"""Dashboard pages over HTTP (TestClient, real SQLite ledger and chdb): what a page refuses.

The figures themselves are checked against the API in a real browser (tests/e2e); here the
rules around them: no session no figure, foreign form posts refused, errors with a machine
code, strict headers, the charting library served from the package.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import write_keys
from fastapi.testclient import TestClient

from tutorledger.api.app import create_app
from tutorledger.api.dashboard.session import COOKIE
from tutorledger.infra.settings import Settings

KEY = "dash-http-key-000000000000"
OTHER = "dash-http-other-key-000000"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("dash-http")
    keys = [
        {"key": KEY, "role": "dashboard", "districts": ["d1"]},
        {"key": OTHER, "role": "auditor", "districts": ["*"]},
    ]
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}",
        api_keys_file=write_keys(tmp / "keys.json", keys),
        var_dir=tmp / "var",
        session_secret="unit-secret",
    )
    with TestClient(create_app(settings), base_url="http://dash.test") as c:
        yield c


def signed_in(client: TestClient, key: str = KEY) -> TestClient:
    client.cookies.clear()
    response = client.post("/signin", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303 and COOKIE in response.cookies
    return client


def test_pages_without_a_session_send_the_browser_to_sign_in(client: TestClient) -> None:
    client.cookies.clear()
    home = client.get("/")
    assert home.status_code == 200 and 'name="key"' in home.text
    assert "script-src 'self'" in home.headers["content-security-policy"]
    for path in ("/dashboard/d1?grade=2", "/dashboard/d1/drill", "/dashboard/d1/csv/demand"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/?next=%2Fdashboard%2Fd1")


def test_a_foreign_form_post_does_not_sign_in(client: TestClient) -> None:
    client.cookies.clear()
    response = client.post("/signin", data={"key": KEY}, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and COOKIE not in response.cookies
    assert "forbidden" in response.text


def test_errors_name_their_code_and_show_no_figure(client: TestClient) -> None:
    signed_in(client)
    cases = {
        "/dashboard/d2": (403, "forbidden"),
        "/dashboard/d1?grade=13": (422, "invalid_request"),
        "/dashboard/d1?from=2026-02-01&to=2026-01-01": (422, "invalid_request"),
        "/dashboard/d1/drill?school_id=s1": (422, "invalid_request"),
        "/dashboard/d1/csv/nope": (422, "invalid_request"),
    }
    for path, (status, code) in cases.items():
        response = client.get(path)
        assert (response.status_code, code in response.text) == (status, True), path
        assert 'id="as-of-position"' not in response.text


def test_an_empty_district_renders_and_sign_out_ends_the_session(client: TestClient) -> None:
    signed_in(client)
    page = client.get("/dashboard/d1")
    assert page.status_code == 200 and 'id="as-of-position"' in page.text
    assert page.headers["cache-control"] == "no-store"
    client.post("/signout", follow_redirects=False)
    assert client.get("/dashboard/d1", follow_redirects=False).status_code == 303


def test_all_district_keys_pick_from_the_projected_districts(client: TestClient) -> None:
    picker = signed_in(client, OTHER).get("/")
    assert picker.status_code == 200 and "Choose a district" in picker.text


def test_the_charting_library_is_served_from_the_package_compressed(client: TestClient) -> None:
    response = client.get(
        "/static/dashboard/vendor/chartjs/chart.umd.min.js", headers={"Accept-Encoding": "gzip"}
    )
    assert response.status_code == 200 and response.headers["content-encoding"] == "gzip"
    assert response.content.startswith(b"/*!\n * Chart.js v4.6.1")


def test_a_page_is_sent_gzipped_to_a_browser_that_takes_it(client: TestClient) -> None:
    signed_in(client)
    plain = client.get("/dashboard/d1", headers={"Accept-Encoding": "identity"})
    zipped = client.get("/dashboard/d1", headers={"Accept-Encoding": "gzip, deflate"})
    assert "content-encoding" not in plain.headers
    assert (
        zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
    )
    assert int(zipped.headers["content-length"]) < len(plain.content) / 3
    assert zipped.text == plain.text  # the same page, decompressed by the client
    assert zipped.headers["content-security-policy"] == plain.headers["content-security-policy"]
