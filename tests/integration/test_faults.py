"""Faults on real servers while events stream in: nothing accepted is lost or counted twice.

Emitters post a generated district at a steady rate through the API (Kafka mode: PostgreSQL
ledger → relay → tansu → projector → ClickHouse 18.16), retrying on timeouts and errors with
the same body. Meanwhile, at random moments, the harness SIGKILLs the relay, the projector
or the API and stops and restarts the broker, the ClickHouse server and PostgreSQL (each at
least once). Afterwards every metric the API reports equals the reference computed from the
accepted events, ClickHouse holds each ledger position once, and every event is stored once.

One fault is the broker's, not ours: tansu on S3 storage saves a producer's sequence number,
then the partition's high watermark, then the record batch, as three separate writes. A
SIGKILL between them loses a batch it will later acknowledge: the producer's retry is
answered DUPLICATE_SEQUENCE_NUMBER, which Kafka clients take as success, and the watermarks
that follow arrive, so `/readyz` says caught up while those events are not in the figures
(about one run in four before `repair` existed). The harness therefore asserts that a
mismatch is never silent: once caught up, `tutorledger repair --dry-run` must name every
missing position, `tutorledger repair` must fill them, and only then are figures compared.
What the broker lost is reported with how long after a broker restart it had been accepted.

Bounded here (about a minute of streaming, 10 faults); `TUTORLEDGER_SOAK_SECONDS=600` runs
a soak with a fault every ~7 s, and `TUTORLEDGER_FAULT_KINDS=broker` injects only those.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import reference_metrics as ref
from builders import write_keys
from fault_emitters import EMITTERS, KEY, RATE, Book, emit
from faults import (
    DurableBroker,
    PrivatePostgres,
    RestartableClickHouse,
    Workers,
    stack_env,
    start_or_skip,
)
from reference import participation as ref_participation

from tutorledger.bench.district import DistrictSpec, generate

SECONDS = float(os.environ.get("TUTORLEDGER_SOAK_SECONDS", "60"))
FAULTS = max(10, int(SECONDS / 7))
DISTRICT = "d-faults"
TZ = "America/New_York"
ALL_KINDS = "relay,projector,api,broker,clickhouse,postgres"
KINDS = os.environ.get("TUTORLEDGER_FAULT_KINDS", ALL_KINDS).split(",")  # e.g. only "broker"


def inject(kind: str, stack: dict[str, Any]) -> None:
    workers: Workers = stack["workers"]
    if kind in ("relay", "projector", "api"):
        workers.kill(kind)
        time.sleep(random.uniform(0.5, 2.0))
        workers.start(kind)
    elif kind == "broker":
        stack["broker"].kill()
        time.sleep(random.uniform(1.0, 3.0))
        stack["broker"].start()
    elif kind == "clickhouse":
        stack["clickhouse"].stop()
        time.sleep(random.uniform(1.0, 3.0))
        stack["clickhouse"].start()
    else:
        stack["postgres"].stop("immediate")
        time.sleep(random.uniform(1.0, 3.0))
        stack["postgres"].start()
    workers.ensure_alive()


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    pg = start_or_skip("private PostgreSQL", PrivatePostgres.create)
    broker = DurableBroker(tmp_path)
    clickhouse = RestartableClickHouse(tmp_path / "ch")
    workers: Workers | None = None
    try:
        start_or_skip("tansu on S3", lambda: (broker.start_storage(), broker.start()))
        start_or_skip("ClickHouse server", clickhouse.start)
        keys = write_keys(tmp_path / "keys.json", [{"key": KEY, "role": "admin",
                                                     "districts": ["*"]}])  # fmt: skip
        workers = Workers(stack_env(pg, broker, clickhouse, keys, tmp_path), tmp_path)
        for name in ("api", "relay", "projector"):
            workers.start(name)
        yield {"postgres": pg, "broker": broker, "clickhouse": clickhouse, "workers": workers}
    finally:
        if workers is not None:
            workers.stop()
        broker.stop()
        clickhouse.stop()
        pg.destroy()


def pipeline_lag(base_url: str) -> int:
    """Events stored but not yet in the figures (relay + Kafka + projector), per /readyz."""
    try:
        lag = httpx.get(f"{base_url}/readyz", timeout=5).json()["checks"]["projection_lag"]
    except (httpx.HTTPError, ValueError, KeyError):
        return 0
    return int(lag or 0)


def caught_up(client: httpx.Client) -> bool:
    try:
        checks = client.get("/readyz").json()["checks"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return checks.get("projection_lag") == 0 and checks.get("relay_lag") == 0


def stream_with_faults(stack: dict[str, Any], book: Book) -> list[tuple[float, str, int]]:
    """Emit the district while injecting the planned faults; (t, kind, events in flight)."""
    rng = random.Random(13)
    random.seed(13)
    students = int(SECONDS * RATE / 9) + 20
    district = generate(DistrictSpec(district_id=DISTRICT, students=students, schools=4, days=14))
    queues: list[list[dict[str, Any]]] = [[] for _ in range(EMITTERS)]
    for event in district.events:  # a session's events stay in order, on one emitter
        queues[zlib.crc32(event["session_id"].encode()) % EMITTERS].append(event)
    base_url = stack["workers"].procs["api"].base_url
    stop = threading.Event()
    threads = [threading.Thread(target=emit, args=(base_url, q, book, stop)) for q in queues]
    for t in threads:
        t.start()
    plan = KINDS + [rng.choice(KINDS) for _ in range(FAULTS - len(KINDS))]
    rng.shuffle(plan)
    injected: list[tuple[float, str, int]] = []
    try:
        for kind in plan:
            time.sleep(rng.uniform(0.3, 1.7) * SECONDS / (FAULTS + 1))
            with book.lock:
                unanswered = len(book.sends.keys() - book.status.keys())
            in_flight = unanswered + pipeline_lag(base_url)
            injected.append((round(time.monotonic() - book.started, 1), kind, in_flight))
            inject(kind, stack)
        for t in threads:
            t.join(timeout=max(5.0, SECONDS * 3))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    return injected


STALLED = "no projected request for a step"  # the projector's error while it waits


def wait_caught_up(client: httpx.Client, workers: Workers) -> int:
    """Wait until nothing is left to project. A projector stalled on a step whose request the
    broker lost is unblocked the documented way, `repair --upto` the ledger head, once the
    relay has sent everything; returns how many times that was needed."""
    deadline, unblocked, seen = time.monotonic() + 600, 0, 0
    while not caught_up(client):
        assert time.monotonic() < deadline, client.get("/readyz").text
        workers.ensure_alive()
        checks = client.get("/readyz").json()["checks"]
        stalls = workers.procs["projector"].log(10**7).count(STALLED)
        if checks.get("relay_lag") == 0 and stalls > seen:
            head = checks["event_store"]["head_position"]
            workers.run_cli(["repair", "--upto", str(head)])
            unblocked, seen = unblocked + 1, stalls
            time.sleep(5)  # the projector retries its batch every few seconds
        time.sleep(1)
    return unblocked


def broker_losses(gaps: dict[str, Any], book: Book, injected: list[tuple[float, str, int]]
                  ) -> list[tuple[int, float | None]]:  # fmt: skip
    """Each missing position with its acceptance time relative to the nearest broker fault."""
    kills = [t for t, kind, _ in injected if kind == "broker"]
    out = []
    for position in gaps["missing_positions"]:
        at = book.answered_at.get(position)
        if at is None or not kills:
            out.append((position, None))
            continue
        rel = at - book.started
        out.append((position, round(min((rel - k for k in kills), key=abs), 1)))
    return out


def test_nothing_lost_or_doubled_under_faults(stack: dict[str, Any], tmp_path: Path) -> None:
    workers: Workers = stack["workers"]
    book = Book()
    injected = stream_with_faults(stack, book)
    with httpx.Client(base_url=workers.procs["api"].base_url, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as client:  # fmt: skip
        unblocked = wait_caught_up(client, workers)
        if unblocked:  # a stall is only ever the broker's loss, and the relay said so
            assert "without an offset" in workers.procs["relay"].log(10**7)
        before = figures(client, book)
        gaps = workers.run_cli(["repair", "--dry-run"])
        losses = broker_losses(gaps, book, injected)
        # Never silent: if the figures are off, detection names the missing positions.
        holes = gaps["missing"] + gaps["read_model_missing"]
        facts = fact_rows(stack["clickhouse"].url)
        assert all(before.values()) or holes > 0, (before, gaps, facts)
        assert gaps["unexpected"] == 0, gaps
        repaired = workers.run_cli(["repair"])["repaired"] if holes else 0
        assert repaired >= max(gaps["missing"], gaps["read_model_missing"])
        report = compare(client, book, stack["clickhouse"].url)
    report |= {
        "faults": injected,
        "transport_errors": dict(book.errors),
        "figures_equal_before_repair": before,
        "lost_by_broker_then_repaired": gaps["missing"],
        "stalled_projector_unblocked_by_repair": unblocked,
        "read_model_rows_missing_then_repaired": gaps["read_model_missing"],
        "lost_positions_s_after_broker_fault": losses,
    }
    (tmp_path / "faults-report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "faults"}))  # noqa: T201
    print("faults (t s, kind, events sent or stored but not yet projected):", injected)  # noqa: T201
    assert {kind for _, kind, _ in injected} == set(KINDS)
    assert report["lost"] == 0 and report["doubled"] == 0, report
    assert report["projected_rows"] == report["projected_positions"] == report["events_stored"]
    assert report["retried_not_duplicate_or_accepted"] == 0, report
    assert set(report["resent_after_answer"]) == {"duplicate"}, report
    assert workers.run_cli(["repair", "--dry-run"])["ok"] is True


def close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative, at any depth."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and a == pytest.approx(b, rel=1e-9)
    return bool(a == b)


def projected_rows(url: str) -> tuple[int, int]:
    from clickhouse_driver import Client

    client = Client.from_url(url)
    try:
        total, distinct = client.execute(
            "SELECT count(), uniqExact(position) FROM ledger_events FINAL "
            "WHERE district_id = %(d)s",
            {"d": DISTRICT},
        )[0]
        return int(total), int(distinct)
    finally:
        client.disconnect()


def fact_rows(url: str) -> tuple[int, int]:
    """(rows, distinct positions) of the session facts the metrics read (no FINAL)."""
    from clickhouse_driver import Client

    client = Client.from_url(url)
    try:
        total, distinct = client.execute(
            "SELECT count(), uniqExact(position) FROM session_facts_g1 WHERE district_id = %(d)s",
            {"d": DISTRICT},
        )[0]
        return int(total), int(distinct)
    finally:
        client.disconnect()


def shown(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without their `suppressed` flag, which an admin key never sees set."""
    assert not any(r.get("suppressed") for r in rows), rows
    return [{k: v for k, v in r.items() if k != "suppressed"} for r in rows]


def figures(client: httpx.Client, book: Book) -> dict[str, bool]:
    """Whether each metric the API answers equals the reference from the acknowledged events."""
    events = [book.events[eid] for eid in book.status]  # each accepted event once
    params = {"district_id": DISTRICT}
    same: dict[str, bool] = {}
    got = client.get("/v1/metrics/participation", params=params).json()
    expected = ref_participation(events, [], DISTRICT, TZ)
    same["participation"] = all(close(got[k], v) for k, v in expected.items()
                                if k in got and k not in ("enrolled", "reach_rate"))  # fmt: skip
    for name, compute in (("wait-times", ref.wait_times), ("satisfaction", ref.satisfaction)):
        rows = client.get(f"/v1/metrics/{name}", params=params).json()["rows"]
        same[name] = close(shown(rows), compute(events, DISTRICT, TZ))
    rows = client.get("/v1/metrics/demand", params=params).json()["rows"]
    same["demand"] = close(shown(rows), ref.demand(events, DISTRICT, TZ))
    return same


def compare(client: httpx.Client, book: Book, clickhouse_url: str) -> dict[str, Any]:
    """Every metric against the reference, and the stores counted directly."""
    same = figures(client, book)
    params = {"district_id": DISTRICT}
    got = client.get("/v1/metrics/participation", params=params).json()
    verify = client.get("/v1/audit/verify", params=params).json()
    stored = verify["checked"]
    accepted = len(book.status)
    projected = got["sessions_requested"]
    acknowledged = ("accepted", "duplicate")
    retried_bad = sum(1 for e in book.retried if book.status.get(e) not in acknowledged)
    statuses = Counter(book.status[e] for e in book.retried if e in book.status)
    rows, positions = projected_rows(clickhouse_url)
    assert not book.failures, book.failures
    assert all(same.values()), (same, stored, rows, positions, fact_rows(clickhouse_url), got)
    return {
        "projected_rows": rows,
        "projected_positions": positions,
        "events_acknowledged": accepted,
        "events_stored": stored,
        "lost": max(0, accepted - stored),
        "doubled": max(0, stored - accepted),
        "sessions_requested": projected,
        "metrics_equal_reference": same,
        "retried_events": len(book.retried),
        "retried_statuses": dict(statuses),
        "retried_not_duplicate_or_accepted": retried_bad,
        "resent_after_answer": dict(book.resent_statuses),
        "chain_ok": verify["ok"],
    }
