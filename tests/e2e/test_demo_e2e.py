"""`tutorledger demo` gives a district a program lead can read by provider and by group.

The installed script fills a ledger twice (the second run adds nothing: every event is a
recognised duplicate and the roster is unchanged), a server projects it, and over HTTP:
each provider has its own figures, which add up to the district's; each event's history
names the provider and the key that recorded it, as a posted event's does; the roster's
groups are there with their equity gaps, English learners behind on reach.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import installed
import pytest
from builders import write_keys
from served import kill, server_env, start_server, stop
from waiting import wait_until

from tutorledger.bench.demo import IN_HOUSE, VENDOR, generate_demo, key_id
from tutorledger.bench.district import DistrictSpec

pytestmark = pytest.mark.e2e

ADMIN_KEY = "e2e-demo-admin-key-000000000000"
DISTRICT = "demo-district"
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Purpose": "demo e2e test"}


def demo(tmp: Path, keys: Path) -> dict[str, Any]:
    result = subprocess.run([str(installed.cli()), "demo"], env=server_env(tmp, keys), cwd=tmp,
                            capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def get(base: str, path: str, **params: str) -> dict[str, Any]:
    r = httpx.get(f"{base}{path}", params={"district_id": DISTRICT, **params},
                  headers=HEADERS, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def projected(base_url: str) -> bool:
    """The server's projector has caught up with the ledger (readiness: no projection lag)."""
    r = httpx.get(f"{base_url}/readyz", headers=HEADERS)
    return r.status_code == 200 and r.json()["checks"].get("projection_lag") == 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("demo")
    keys = write_keys(tmp / "api-keys.json",
                      [{"key": ADMIN_KEY, "role": "admin", "districts": ["*"]}])  # fmt: skip
    first, again = demo(tmp, keys), demo(tmp, keys)
    server = start_server(tmp, keys, "demo")
    try:
        wait_until(lambda: projected(server.base_url), "the server to project the demo ledger")
        yield server.base_url, first, again
    finally:
        if stop(server) != 0:
            kill(server)


def test_a_rerun_adds_nothing(served: Any) -> None:
    _, first, again = served
    assert first["accepted"] > 0 and first["rejected"] == 0
    assert first["roster"] == {"as_of": "2026-08-31", "students": DistrictSpec().students,
                               "groups": 16, "changed": True}  # fmt: skip
    assert again["accepted"] == 0 and again["rejected"] == 0
    assert again["duplicate"] == first["accepted"] + first["duplicate"]
    assert again["roster"] == {**first["roster"], "changed": False}


def test_each_provider_has_its_figures_and_they_add_up(served: Any) -> None:
    base, _, _ = served
    whole = get(base, "/v1/metrics/participation")
    each = {p: get(base, "/v1/metrics/participation", provider=p) for p in (VENDOR, IN_HOUSE)}
    assert sum(f["sessions_requested"] for f in each.values()) == whole["sessions_requested"]
    assert sum(f["sessions_completed"] for f in each.values()) == whole["sessions_completed"]
    vendor, in_house = each[VENDOR], each[IN_HOUSE]
    assert vendor["sessions_requested"] > 2 * in_house["sessions_requested"] > 0  # most sessions
    assert 0 < in_house["students_served"] < vendor["students_served"] / 10  # a subset
    dosage = {p: get(base, "/v1/metrics/dosage", provider=p) for p in (VENDOR, IN_HOUSE)}
    assert dosage[IN_HOUSE]["length_p50"] >= 30  # the programme's 30-45 minute sessions
    weekly = dosage[IN_HOUSE]["sessions_completed"] / dosage[IN_HOUSE]["students_served"] / 4
    assert 2.5 <= weekly <= 3.0  # three a week over the demo's four weeks, a few missed
    assert dosage[IN_HOUSE]["minutes_per_student"] > 2 * dosage[VENDOR]["minutes_per_student"]


def test_each_event_names_the_provider_and_key_that_recorded_it(served: Any) -> None:
    base, _, _ = served
    generated = generate_demo(DistrictSpec())
    for provider in (VENDOR, IN_HOUSE):
        session = next(s for s, p in generated.provider_of.items() if p == provider)
        history = get(base, f"/v1/sessions/{DISTRICT}/{session}/events")["events"]
        expected = {"format": 1, "via": "api", "key_id": key_id(DISTRICT, provider),
                    "provider": provider}  # fmt: skip
        assert history and all(item["provenance"] == expected for item in history)
    assert get(base, "/v1/audit/verify")["ok"] is True


def test_the_roster_groups_show_an_equity_gap(served: Any) -> None:
    base, _, _ = served
    gaps = get(base, "/v1/metrics/equity-gaps")
    assert gaps["students"] == DistrictSpec().students
    rows = {(r["group"], r["measure"]): r for r in gaps["rows"]}
    share = {g: rows[(g, "reach")]["students"] / gaps["students"] for g, _ in rows}
    assert 0.10 < share["ell"] < 0.20 and 0.50 < share["econ_disadv"] < 0.70
    assert 0.08 < share["sped"] < 0.16 and 0.40 < share["female"] < 0.60
    ell = rows[("ell", "reach")]
    assert ell["difference"] < 0 and ell["ci_high"] < 0  # behind, and not by chance
    assert rows[("ell", "regular_use")]["ci_high"] < 0
    female = rows[("female", "reach")]
    assert female["ci_low"] < 0 < female["ci_high"]  # no gap planted
    by_group = get(base, "/v1/metrics/participation", group="ell")
    assert (
        0
        < by_group["sessions_requested"]
        < get(base, "/v1/metrics/participation")["sessions_requested"]
    )


def test_the_pages_read_by_provider_and_group(served: Any) -> None:
    """As a program lead: the provider picker lists both providers, a provider's district
    page says whose figures it shows and why most schools read zero, the groups page takes
    the provider (its gaps are the API's for that provider, in percentage points), and the
    roster groups sit apart in the cohort picker."""
    base, _, _ = served
    with httpx.Client(base_url=base, timeout=120) as browser:
        signed = browser.post("/signin", data={"key": ADMIN_KEY}, follow_redirects=False)
        assert signed.status_code == 303, signed.text
        page = browser.get(f"/dashboard/{DISTRICT}", params={"provider": IN_HOUSE}).text
        picker = page.split('id="f-provider"')[1].split("</select>")[0]
        assert f'value="{VENDOR}"' in picker and f'value="{IN_HOUSE}" selected' in picker
        assert f"· provider {IN_HOUSE}</h1>" in page
        assert 'id="schools-provider"' in page and "rank first" in page
        assert f'href="/dashboard/{DISTRICT}/groups?provider={IN_HOUSE}"' in page
        cohorts = page.split('id="f-cohort"')[1].split("</select>")[0]
        roster = cohorts.split('<optgroup label="Roster groups')[1]
        assert 'value="roster.ell"' in roster and "(roster.ell)" not in roster
        whole = browser.get(f"/dashboard/{DISTRICT}").text
        shown = int(whole.split('<h2 id="alerts-h">Early alerts (')[1].split(")")[0])
        if shown <= 6:  # all six cards on the page, nothing folded
            assert '<details class="more-alerts">' not in whole
        else:
            summary = whole.split('<details class="more-alerts">')[1].split("</summary>")[0]
            more, kinds = summary.split("<summary>")[1].split(" more alerts: ")
            counts = [int(part.split()[0]) for part in kinds.split(", ")]
            assert sum(counts) == int(more) == shown - 6, summary  # folded, counted by kind
        groups = browser.get(f"/dashboard/{DISTRICT}/groups", params={"provider": IN_HOUSE}).text
    assert f"· provider {IN_HOUSE}</h1>" in groups and f"<strong>{IN_HOUSE}</strong>" in groups
    gaps = get(base, "/v1/metrics/equity-gaps", provider=IN_HOUSE)["rows"]
    everyone = get(base, "/v1/metrics/equity-gaps")["rows"]
    assert gaps != everyone
    for row in gaps:
        cell = groups.split(f'data-key="{row["group"]}"')[1].split("</tr>")[0]
        gap = cell.split(f'data-col="{row["measure"]}_gap" data-value="{row["difference"]}"')[1]
        assert " pts" in gap.split("</td>")[0] and "%" not in gap.split("</td>")[0]
