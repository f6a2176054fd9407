"""Many emitters racing on the same sessions against `serve --workers 3`, on PostgreSQL and
on one SQLite file.

Every emitter sends the whole district: the same sessions, the same event ids, each in its
own interleaving of sessions (a session's events stay in order), in batches, all at once.
So the same event reaches different worker processes at the same moment, and different
events of one session are appended by different processes. Afterwards:

- each event id was answered `accepted` exactly once, every other answer `duplicate` naming
  the same position, nothing rejected, no batch answered 503 (a writer that lost a race
  tries again in the exclusive turn);
- each event is stored once (ledger index and events table), and the chain verifies;
- no forked history: each session's stored versions are 1..n without a gap, and its history
  is exactly the emitted sequence, in order.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import live
import psycopg
import pytest
from builders import write_keys

from tutorledger.bench.district import DistrictSpec, generate

DISTRICT = "d-race"
EMITTERS, WORKERS, BATCH = 8, 3, 10
KEY = "race-admin-key-0000000000000"


@pytest.fixture
def api(
    store_url: str, clickhouse_url: str, kafka_bootstrap: str, tmp_path: Path
) -> Iterator[live.Proc]:
    keys = write_keys(tmp_path / "keys.json", [{"key": KEY, "role": "admin", "districts": ["*"]}])
    env = {
        "TUTORLEDGER_EVENT_STORE": store_url,
        "TUTORLEDGER_STREAM": f"kafka://{kafka_bootstrap}",
        "TUTORLEDGER_CLICKHOUSE": clickhouse_url,
        "TUTORLEDGER_API_KEYS_FILE": str(keys),
        "TUTORLEDGER_VAR_DIR": str(tmp_path / "var"),
    }
    proc = live.serve(env, tmp_path / "api.log", workers=WORKERS, timeout=300)
    yield proc
    proc.stop()


def interleaving(sessions: dict[str, list[dict[str, Any]]], seed: int) -> list[dict[str, Any]]:
    """All events, sessions in a random order and mixed, each session's events in order."""
    rng = random.Random(seed)
    pending = {s: list(events) for s, events in sessions.items()}
    order: list[dict[str, Any]] = []
    while pending:
        session = rng.choice(sorted(pending))
        order.append(pending[session].pop(0))
        if not pending[session]:
            del pending[session]
    return order


def send(
    base_url: str,
    events: list[dict[str, Any]],
    answers: list[dict[str, Any]],
    refused: Counter[int],
) -> None:
    """Post `events` in batches; a 503 (lost too many write races) is resent, as clients do,
    and counted in `refused`."""
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=base_url, timeout=120, headers=headers) as client:
        for i in range(0, len(events), BATCH):
            batch = events[i : i + BATCH]
            while True:
                response = client.post("/v1/events", json={"events": batch})
                if response.status_code != 503:
                    break
                refused[response.status_code] += 1
            assert response.status_code == 200, response.text
            answers.extend(response.json()["results"])


COUNTS = "SELECT count(*), count(DISTINCT event_id) FROM ledger_index"
VERSIONS = (  # the library names the events table after the application on PostgreSQL only
    "SELECT originator_id, originator_version FROM {} ORDER BY originator_id, originator_version"
)


def stored(url: str) -> tuple[int, int, dict[str, list[int]]]:
    """(index rows, distinct event ids, each aggregate's stored versions) from the store."""
    versions: dict[str, list[int]] = defaultdict(list)
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as lite:
            rows, ids = lite.execute(COUNTS).fetchone()
            for originator, version in lite.execute(VERSIONS.format("stored_events")):
                versions[str(originator)].append(int(version))
        return int(rows), int(ids), versions
    with psycopg.connect(url) as conn:
        rows, ids = conn.execute(COUNTS).fetchone() or (0, 0)
        for originator, version in conn.execute(VERSIONS.format("tutorledger_events")):
            versions[str(originator)].append(int(version))
    return int(rows), int(ids), versions


def test_racing_emitters_store_each_event_once_in_order(api: live.Proc, store_url: str) -> None:
    district = generate(DistrictSpec(district_id=DISTRICT, students=60, schools=2, days=5))
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in district.events:
        sessions[event["session_id"]].append(event)
    answers: list[list[dict[str, Any]]] = [[] for _ in range(EMITTERS)]
    refused: Counter[int] = Counter()
    threads = [
        threading.Thread(
            target=send, args=(api.base_url, interleaving(sessions, n), answers[n], refused)
        )
        for n in range(EMITTERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [a for got in answers for a in got]
    expected = {e["event_id"] for e in district.events}
    assert len(every) == EMITTERS * len(district.events)  # the district holds resends too
    assert Counter(a["status"] for a in every)["rejected"] == 0, [
        a for a in every if a["status"] == "rejected"
    ][:3]
    accepted = Counter(a["event_id"] for a in every if a["status"] == "accepted")
    assert set(accepted) == expected and set(accepted.values()) == {1}
    # A writer that lost a race tries again in the exclusive turn, where it cannot lose.
    assert refused[503] == 0, f"{refused[503]} batches answered 503"
    position = {a["event_id"]: a["position"] for a in every if a["status"] == "accepted"}
    assert all(a["position"] == position[a["event_id"]] for a in every)

    rows, ids, versions = stored(store_url)
    assert rows == ids == len(expected)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    headers = {"Authorization": f"Bearer {KEY}", "X-Purpose": "concurrency test"}
    with httpx.Client(base_url=api.base_url, timeout=60, headers=headers) as client:
        verify = client.get("/v1/audit/verify", params={"district_id": DISTRICT}).json()
        assert verify["ok"] and verify["checked"] == len(expected), verify
        for session, events in sessions.items():
            history = client.get(f"/v1/sessions/{DISTRICT}/{session}/events").json()["events"]
            sent = list(dict.fromkeys(e["event_id"] for e in events))  # first of each resend
            assert [h["event"]["event_id"] for h in history] == sent
    print(  # noqa: T201
        f"{EMITTERS} emitters x {len(expected)} events on {len(sessions)} sessions, "
        f"{WORKERS} workers: {len(every)} answers, {len(expected)} accepted once each, "
        f"{refused[503]} batches answered 503 and resent"
    )


def test_processes_starting_together_create_the_schema_in_turn(pg_dsn: str) -> None:
    """Ledgers opened at once on a fresh database (what `serve --workers` does) all start."""
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.settings import Settings

    gate, errors, opened = threading.Barrier(6), [], []

    def open_one() -> None:
        gate.wait()
        try:
            ledger = open_ledger(Settings(event_store=pg_dsn))
            ledger.factory.tracking_recorder()
            opened.append(ledger)
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ledger in opened:
        ledger.close()
    assert errors == [] and len(opened) == 6
