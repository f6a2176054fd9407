"""The performance suite behind `tutorledger bench`: each stage beside a raw baseline, same run.

Machines here are noisy, so absolute rates drift; the ratio to the baseline measured
seconds earlier on the same machine is the number to compare across runs.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsourcing.domain import Aggregate, event

from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.domain.envelope import canonical_json
from tutorledger.infra.settings import Settings
from tutorledger.infra.store import open_ledger, store_env

SIZES = {"small": 5_000, "medium": 100_000, "large": 1_000_000}
BATCH = 1000


@dataclass
class Stage:
    name: str
    events: int
    seconds: float
    baseline: str = ""
    baseline_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        base_rate = self.events / self.baseline_seconds if self.baseline_seconds else None
        return {
            "stage": self.name,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.rate, 1),
            "baseline": self.baseline or None,
            "baseline_events_per_second": round(base_rate, 1) if base_rate else None,
            "ratio_to_baseline": round(self.rate / base_rate, 3) if base_rate else None,
            **self.extra,
        }


class RawEvent(Aggregate):
    """Baseline aggregate: one stored event per envelope, no rules, no index."""

    @event("Recorded")
    def __init__(self, envelope: dict[str, Any]) -> None:
        self.envelope = envelope


def district_events(size: int) -> list[dict[str, Any]]:
    """About `size` distinct, valid events from the synthetic district generator."""
    students = max(50, size // 12)
    events = generate(DistrictSpec(students=students, days=28, duplicate_rate=0.0)).events
    return events[:size]


def timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def raw_env(store_url: str) -> dict[str, str]:
    """The library's own recorder on a separate file or schema: the baseline's own space."""
    ours = ("APPLICATION_RECORDER_TOPIC", "MAPPER_TOPIC")
    env = {k: v for k, v in store_env(store_url).items() if k not in ours}
    if "SQLITE_DBNAME" in env:
        env["SQLITE_DBNAME"] += ".raw"
        return env
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_raw")
    env["POSTGRES_SCHEMA"] = "bench_raw"
    return env


def bench_rebuild(store_url: str, label: str) -> Stage:
    """`rebuild` of the whole ledger into fresh projections vs inserting the same rows."""
    from tutorledger.consumers.projector import decode
    from tutorledger.consumers.rebuild import rebuild
    from tutorledger.infra.clickhouse import ChdbStore
    from tutorledger.projections.rows import COLUMNS, event_row
    from tutorledger.projections.schema import migrate

    ledger = open_ledger(Settings(event_store=store_url))
    with tempfile.TemporaryDirectory() as chdir:
        store = ChdbStore(chdir, "rebuild")
        migrate(store)
        report = rebuild(ledger, store, batch_size=20_000)
        notes = ledger.recorder.select_notifications(start=1, limit=10**9)
        rows = [event_row(n.id, decode(ledger, n)) for n in notes]
        store.execute("CREATE TABLE raw_rows AS ledger_events")

        def insert_rows() -> None:
            for i in range(0, len(rows), 20_000):
                store.insert("raw_rows", COLUMNS, rows[i : i + 20_000])

        baseline = timed(insert_rows)
        store.close()
    ledger.close()
    return Stage(
        f"rebuild ({label} → chdb)", report.events, report.seconds, "bare chdb inserts", baseline
    )


def bench_dashboard(size: int, clickhouse: str | None) -> list[Stage]:
    """Every metric over HTTP on a streamed district of `size` events (bench.metrics_latency):
    the whole-range p50/p95 per metric, beside the count() floor, in the report."""
    from tutorledger.bench.metrics_latency import run

    stages = []
    for url in (None, clickhouse) if clickhouse else (None,):
        found = run(size, repeats=10, clickhouse=url)
        whole = found["http"]["whole range"]
        backend = found["backend"]
        for metric, timing in whole.items():
            extra = {**timing, "floor_count_p95_ms": found["floor_count"]["whole range"]["p95_ms"]}
            seconds = timing["p50_ms"] / 1000
            stages.append(Stage(f"dashboard {metric} ({backend}, HTTP)", found["events"],
                                seconds, extra=extra))  # fmt: skip
        rss = found["serve_rss_mib"]
        stages.append(Stage(f"serve RSS MiB ({backend})", found["events"], 1.0, extra=rss))
    return stages


def bench_stream(store_url: str, bootstrap: str, clickhouse: str) -> list[Stage]:
    """Relay vs a bare producer of the same bytes; projector vs bare consume + insert; lag."""
    from kafka import KafkaConsumer, TopicPartition

    from tutorledger.consumers.kafka_projector import KafkaProjector, stream_position
    from tutorledger.consumers.projector import decode
    from tutorledger.consumers.relay import Relay
    from tutorledger.infra.clickhouse import open_projection_store
    from tutorledger.infra.kafka import ensure_topics, make_consumer, make_producer
    from tutorledger.projections.rows import COLUMNS, event_row
    from tutorledger.projections.schema import migrate

    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        event_store=store_url, stream=f"kafka://{bootstrap}", clickhouse=clickhouse,
        kafka_topic=f"bench-{tag}", kafka_dead_letter_topic=f"bench-dlq-{tag}",
        kafka_group=f"bench-{tag}", kafka_partitions=3,
    )  # fmt: skip
    ensure_topics(settings)
    ledger = open_ledger(settings)
    producer = make_producer(settings)
    relay = Relay(ledger, producer, settings.kafka_topic, ledger.factory.tracking_recorder(), 5000)
    relay_seconds = timed(lambda: [None for _ in iter(relay.step, 0)])
    notes = ledger.recorder.select_notifications(start=1, limit=10**9)
    values = [canonical_json({**decode(ledger, n), "position": n.id}) for n in notes]
    bare_topic = f"bench-bare-{tag}"

    def bare_produce() -> None:
        for v in values:
            producer.send(bare_topic, value=v, partition=0)
        producer.flush()

    relay_base = timed(bare_produce)
    store = open_projection_store(settings)
    migrate(store)
    consumer = make_consumer(settings, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    consumer.subscribe([settings.kafka_topic])
    projector = KafkaProjector(consumer, store, producer, settings.kafka_dead_letter_topic, 5000)
    head = notes[-1].id
    while not consumer.assignment():  # join the group before timing (a join takes seconds)
        consumer.poll(timeout_ms=200)
    consumer.seek_to_beginning()
    start = time.perf_counter()
    while stream_position(store) < head:
        projector.step()
    project_seconds = time.perf_counter() - start

    def bare_consume_insert() -> None:
        bare = KafkaConsumer(bootstrap_servers=[bootstrap], consumer_timeout_ms=2000)
        bare.assign([TopicPartition(bare_topic, 0)])
        bare.seek_to_beginning()
        got = 0
        import json

        while got < len(values):
            batch = [r for part in bare.poll(timeout_ms=500, max_records=5000).values()
                     for r in part]  # fmt: skip
            rows = [event_row(d.pop("position"), d) for d in (json.loads(r.value) for r in batch)]
            store.insert("ledger_events", COLUMNS, rows)
            got += len(batch)
        bare.close()

    project_base = timed(bare_consume_insert)
    lag = sustained_lag(ledger, relay, projector, store)
    consumer.close()
    producer.close()
    store.close()
    ledger.close()
    n = len(values)
    return [
        Stage("relay (ledger → Kafka)", n, relay_seconds, "bare kafka-python producer", relay_base),
        Stage("projector (Kafka → ClickHouse)", n, project_seconds, "bare consume + insert",
              project_base),
        lag,
    ]  # fmt: skip


def sustained_lag(ledger: Any, relay: Any, projector: Any, store: Any,
                  rate: int = 500, seconds: float = 5.0) -> Stage:  # fmt: skip
    """Append at a steady rate with relay + projector running; time from append to visible."""
    from tutorledger.consumers.kafka_projector import stream_position

    spec = DistrictSpec(district_id="lag-district", students=int(rate * seconds / 6), days=3)
    events = generate(spec).events
    stop = threading.Event()
    workers = [
        threading.Thread(target=w.run, args=(stop,), daemon=True) for w in (relay, projector)
    ]
    for w in workers:
        w.start()
    chunk = max(1, rate // 10)  # ten appends a second, open loop: never waits for the sink
    sent: list[tuple[float, int]] = []
    seen: dict[int, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not (done.is_set() and len(seen) == len(sent)):
            visible = stream_position(store)
            now = time.perf_counter()
            for i, (_, top) in enumerate(list(sent)):
                if i not in seen and top <= visible:
                    seen[i] = now
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.perf_counter()
    for n, i in enumerate(range(0, min(len(events), int(rate * seconds)), chunk)):
        time.sleep(max(0.0, began + n * 0.1 - time.perf_counter()))
        at = time.perf_counter()
        outcomes = ledger.record_events(events[i : i + chunk])
        sent.append((at, max((o.position or 0) for o in outcomes)))
    wall = time.perf_counter() - began  # events/s below is the append rate achieved
    done.set()
    watcher.join(timeout=120)
    lags = [seen[i] - at for i, (at, _) in enumerate(sent) if i in seen]
    stop.set()
    for w in workers:
        w.join(timeout=30)
    ordered = sorted(lags)
    return Stage("end-to-end lag (append → queryable)", len(lags) * chunk, wall, extra={
        "target_events_per_second": rate,
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, 1),
    })  # fmt: skip


def run_suite(size: str, workdir: Path, postgres: str | None, kafka: str | None,
              clickhouse: str | None) -> list[dict[str, Any]]:  # fmt: skip
    events = district_events(SIZES[size])
    sqlite_url = f"sqlite:///{workdir}/ledger.db"
    from tutorledger.bench.write_path import write_path_stages

    stages: list[Stage] = write_path_stages(events, workdir, sqlite_url, postgres)
    stages.append(bench_rebuild(sqlite_url, "SQLite"))
    if postgres:
        stages.append(bench_rebuild(postgres, "PostgreSQL"))
    stages.extend(bench_dashboard(SIZES[size], clickhouse))
    if kafka and clickhouse:
        stages.extend(bench_stream(sqlite_url, kafka, clickhouse))
    return [s.as_dict() for s in stages]
