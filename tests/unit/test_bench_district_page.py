"""The district-page bench's plumbing (the timed run itself is `make bench-small`)."""

from __future__ import annotations

from typing import Any

import pytest

from tutorledger.bench import district_page
from tutorledger.bench.suite import Stage

REPORT: dict[str, Any] = {
    "backend": "chdb (embedded)",
    "district": {"students": 300, "schools": 4, "days": 10},
    "events": 3600,
    "page_server": {"p50_ms": 468.9, "p95_ms": 1550.8, "html_kib": 68.9},
    "page_server_repeat_view": {"p50_ms": 121.4, "p95_ms": 130.2, "html_kib": 68.9},
    "page_browser": {
        "first_byte_ms": 246.3,
        "dom_ready_ms": 792.6,
        "load_ms": 797.0,
        "load_p95_ms": 837.9,
        "repeats": 2,
    },  # fmt: skip
    "browser_skipped": None,
    "metrics_whole_range": {"participation": {"p50_ms": 27.1, "p95_ms": 93.3}},
}


def test_the_table_shows_every_timed_figure() -> None:
    text = district_page.table(REPORT)
    shown = ("468.9", "1550.8", "121.4", "130.2", "68.9 KiB", "246.3", "797.0")
    for figure in (*shown, "/v1/metrics/participation"):
        assert figure in text
    skipped = district_page.table({**REPORT, "page_browser": None, "browser_skipped": "x"})
    assert "page in Chromium: skipped (x)" in skipped


def test_a_missing_browser_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(district_page.shutil, "which", lambda tool: None)
    assert district_page.browser_missing() == "chromium not found"


def test_suite_stages_are_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[district_page.PageSpec] = []
    monkeypatch.setattr(district_page, "run", lambda spec: asked.append(spec) or REPORT)
    stages = [Stage(**s) for s in district_page.suite_stages("small")]
    assert asked[0].students == district_page.SUITE_SIZES["small"]["students"]
    assert [s.name for s in stages] == [
        "district page (server, HTTP)",
        "district page (Chromium load)",
        "district page size: participation (HTTP)",
    ]
    assert stages[0].seconds == pytest.approx(0.4689)
    assert stages[0].as_dict()["html_kib"] == 68.9
