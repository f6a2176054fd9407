"""The projector on real ClickHouse: chdb and a ClickHouse 18.16 server give the same figures,
and killing the projector mid-stream loses and duplicates nothing."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from reference import participation as reference_participation

from tutorledger.bench.district import District, DistrictSpec, generate
from tutorledger.consumers.projector import LedgerFollower
from tutorledger.infra.clickhouse import open_projection_store
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings
from tutorledger.projections.filters import Filters
from tutorledger.projections.participation import participation
from tutorledger.projections.schema import migrate

TZ = "America/New_York"
FILTERS = [
    {},
    {"school_id": "sch-03"},
    {"grade": 7},
    {"subject": "geometry"},
    {"date_from": date(2026, 9, 9), "date_to": date(2026, 9, 12)},
    {"school_id": "sch-01", "grade": 3, "date_to": date(2026, 9, 10)},
]


def _load(store_url: str, district: District) -> None:
    ledger = open_ledger(Settings(event_store=store_url))
    try:
        for school in district.schools:
            ledger.put_school(
                district.spec.district_id, school["school_id"], school["name"],
                school["enrollment"], school["as_of"],
            )  # fmt: skip
        for i in range(0, len(district.events), 1000):
            ledger.record_events(district.events[i : i + 1000])
    finally:
        ledger.close()


def _figures(settings: Settings, district: District) -> list[dict[str, object]]:
    ledger = open_ledger(settings)
    store = open_projection_store(settings)
    try:
        migrate(store)
        LedgerFollower(ledger, store, batch_size=700).catch_up()
        head = int(ledger.recorder.max_notification_id() or 0)
        return [
            participation(store, Filters(district.spec.district_id, head, TZ, **f))  # type: ignore[arg-type]
            for f in FILTERS
        ]
    finally:
        store.close()
        ledger.close()


@pytest.fixture(scope="module")
def district() -> District:
    return generate(DistrictSpec(district_id="d-proj", students=400, schools=4, days=10))


def test_chdb_and_clickhouse_18_agree_with_reference(
    tmp_path: Path, district: District, chdb_url: str, clickhouse_url: str
) -> None:
    store_url = f"sqlite:///{tmp_path}/ledger.db"
    _load(store_url, district)
    on_chdb = _figures(Settings(event_store=store_url, clickhouse=chdb_url), district)
    on_server = _figures(Settings(event_store=store_url, clickhouse=clickhouse_url), district)
    assert on_chdb == on_server
    for figures, f in zip(on_chdb, FILTERS, strict=True):
        expected = reference_participation(
            district.events,
            district.schools,
            "d-proj",
            TZ,
            **f,  # type: ignore[arg-type]
        )
        assert figures == pytest.approx(expected)


FOLLOW = """
import sys
from tutorledger.consumers.projector import LedgerFollower
from tutorledger.infra.clickhouse import open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.projections.schema import migrate
s = Settings(event_store=sys.argv[1], clickhouse=sys.argv[2])
store = open_projection_store(s)
migrate(store)
print("migrated", flush=True)
LedgerFollower(open_ledger(s), store, batch_size=100).catch_up()
"""


def test_projector_killed_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    district = generate(DistrictSpec(district_id="d-proj", students=1500, schools=4, days=10))
    store_url = f"sqlite:///{tmp_path}/ledger.db"
    ch_url = f"chdb://{tmp_path}/chdb"  # its own dir: the subprocesses own it in turn
    _load(store_url, district)
    rng = random.Random(3)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", FOLLOW, store_url, ch_url], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # wait for the schema, however loaded the machine: then project
        time.sleep(rng.uniform(0.2, 1.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1, "the projector should have been killed mid-stream at least once"
    settings = Settings(event_store=store_url, clickhouse=ch_url)
    ledger = open_ledger(settings)
    store = open_projection_store(settings)
    try:
        migrate(store)  # idempotent; the schema is there unless every run died before it
        LedgerFollower(ledger, store, batch_size=300).catch_up()
        head = int(ledger.recorder.max_notification_id() or 0)
        total, distinct, top = store.execute(
            "SELECT count(), uniqExact(position), max(position) FROM ledger_events"
        )[0]
        assert (int(total), int(distinct), int(top)) == (head, head, head)
        figures = participation(store, Filters("d-proj", head, TZ))
    finally:
        store.close()
        ledger.close()
    assert figures == pytest.approx(
        reference_participation(district.events, district.schools, "d-proj", TZ)
    )
