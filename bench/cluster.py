"""Scale-out measurements behind docs/scaling.md: Kafka projectors into one ClickHouse node
and into a two-shard cluster, with one and two projectors; metric latency on each; bytes per
event in each store.

Run from a source checkout (it starts its own servers through devtools/services):
`python -m tutorledger.bench.cluster --districts 4 --students 1500 --days 28 --size 2000000`.
Prints one JSON document; every figure is measured in that run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlparse

from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.bench.metrics_latency import load_stream, timed_ms
from tutorledger.bench.stream_district import StreamSpec, spec_for, stream
from tutorledger.infra.clickhouse import ClusterStore, ProjectionStore, ServerStore
from tutorledger.infra.settings import Settings
from tutorledger.projections.demand import demand
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.participation import participation
from tutorledger.projections.steps import STEP_CODES
from tutorledger.projections.wait_times import wait_times

PARTITIONS = 4
STEPS = tuple(sorted(STEP_CODES.values()))  # every step: all rows a district's range holds
BYTES_SQL = """
SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts
WHERE active AND database = %(db)s GROUP BY table ORDER BY table
"""


def record_districts(dsn: str, count: int, students: int, days: int) -> int:
    """Record `count` generated districts in the ledger; returns the ledger head."""
    from tutorledger.infra.eventstore.store import open_ledger

    ledger = open_ledger(Settings(event_store=dsn))
    try:
        for i in range(count):
            spec = DistrictSpec(district_id=f"bench-{i}", students=students, days=days, seed=i)
            district = generate(spec)
            for s in district.schools:
                ledger.put_school(
                    spec.district_id, s["school_id"], s["name"], s["enrollment"], s["as_of"]
                )
            for start in range(0, len(district.events), 2000):
                ledger.record_events(district.events[start : start + 2000])
        return int(ledger.recorder.max_notification_id() or 0)
    finally:
        ledger.close()


def relay_all(settings: Settings) -> None:
    """Put the whole ledger on the topic once; every projector run reads it from the start."""
    from tutorledger.consumers.relay import Relay
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.kafka import ensure_topics, make_producer

    ensure_topics(settings)
    ledger = open_ledger(settings)
    producer = make_producer(settings)
    relay = Relay(ledger, producer, settings.kafka_topic, ledger.factory.tracking_recorder(), 5000)
    while relay.step():
        pass
    producer.close()
    ledger.close()


def open_store(settings: Settings) -> ProjectionStore:
    if settings.clickhouse_cluster:
        return ClusterStore(settings.clickhouse, settings.clickhouse_cluster)
    return ServerStore(settings.clickhouse)


def projector_rate(settings: Settings, projectors: int, head: int) -> dict[str, float]:
    """Events/s of `projectors` group members draining the topic into a fresh database,
    timed from the first projected batch to the moment every partition's mark is `head`."""
    from tutorledger.consumers.kafka_projector import KafkaProjector, stream_position
    from tutorledger.infra.kafka import make_consumer, make_producer
    from tutorledger.projections.schema import migrate

    stores = [open_store(settings) for _ in range(projectors)]
    migrate(stores[0])
    dlq = make_producer(settings)
    members = []
    for store in stores:
        consumer = make_consumer(settings, session_timeout_ms=6000, heartbeat_interval_ms=1000)
        consumer.subscribe([settings.kafka_topic])
        members.append(KafkaProjector(consumer, store, dlq, settings.kafka_dead_letter_topic))
    stop = threading.Event()
    threads = [threading.Thread(target=m.run, args=(stop,)) for m in members]
    for t in threads:
        t.start()
    while not any(m.projected for m in members):
        time.sleep(0.05)
    started, first = time.perf_counter(), sum(m.projected for m in members)
    while stream_position(stores[0]) < head:
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    stop.set()
    for t in threads:
        t.join(timeout=60)
    for m in members:
        m.consumer.close()
        m.store.close()
    dlq.close()
    done = sum(m.projected for m in members) - first
    return {"events": done, "seconds": round(seconds, 2), "events_per_s": round(done / seconds)}


def bytes_per_event(store: ServerStore, database: str, events: int) -> dict[str, float]:
    """On-disk bytes per ledger event of each table of a (single-node) database."""
    rows = store.execute(BYTES_SQL, {"db": database})
    return {str(t): round(int(b) / events, 1) for t, _, b in rows if int(b)}


def ledger_bytes(dsn: str, events: int) -> float:
    import psycopg

    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
    return round(int(found[0] if found else 0) / events, 1)


def district_specs(size: int, districts: int) -> list[StreamSpec]:
    """`districts` large districts of about size/districts events each."""
    base = spec_for(size // districts)
    return [replace(base, district_id=f"state-{i}", seed=i) for i in range(districts)]


def latency(store: ProjectionStore, specs: list[StreamSpec], head: int, repeats: int) -> Any:
    """p50/p95 of three metrics for each district, with the rows its facts hold."""
    out: dict[str, Any] = {}
    for spec in specs:
        f = Filters(spec.district_id, head, spec.tz)
        rows = store.execute(
            "SELECT count() FROM session_facts_g1 WHERE district_id = %(d)s",
            {"d": spec.district_id},
        )[0][0]
        out[spec.district_id] = {
            "fact_rows": int(rows),
            "wait_times": timed_ms(partial(wait_times, store, f, ()), repeats),
            "participation": timed_ms(partial(participation, store, f), repeats),
            "demand_by_school": timed_ms(partial(demand, store, f, ("school_id",)), repeats),
        }
    return out


def scan_curve(store: ProjectionStore, spec: StreamSpec, head: int, repeats: int) -> Any:
    """Query time against rows scanned: wait times over the first 90 days, one school year
    and the whole range of one district, with the read-model rows each selects."""
    out = []
    for days in (90, 365, None):
        to = None if days is None else spec.start + timedelta(days=days)
        f = Filters(spec.district_id, head, spec.tz, date_to=to)
        where = facts_where(f, STEPS)
        rows = store.execute(f"SELECT count() FROM session_facts_g1 WHERE {where}", f.params())
        timing = timed_ms(partial(wait_times, store, f, ()), repeats)
        out.append({"range_days": days or "all", "rows": int(rows[0][0]), **timing})
    return out


def with_db(url: str, name: str) -> str:
    return urlparse(url)._replace(path=f"/{name}").geturl()


def run(args: argparse.Namespace, services: Any) -> dict[str, Any]:
    """Start the servers, measure, stop them (by pid, through devtools.services)."""
    result: dict[str, Any] = {"load_average_start": os.getloadavg()}
    with ExitStack() as started:
        pg = services.ensure_postgres()
        started.callback(pg.stop)
        db = f"{services.TEST_DB_PREFIX}cluster_{uuid.uuid4().hex[:8]}"
        dsn = services.create_database(db, pg)
        started.callback(services.drop_database, db, pg)
        broker = services.start_tansu()
        started.callback(broker.stop)
        single = services.start_clickhouse()
        started.callback(single.stop)
        cluster = services.start_clickhouse_cluster()
        started.callback(cluster.stop)
        t0 = time.perf_counter()
        head = record_districts(dsn, args.districts, args.students, args.days)
        result["ledger"] = {"events": head, "record_seconds": round(time.perf_counter() - t0, 1)}
        result["ledger"]["bytes_per_event"] = ledger_bytes(dsn, head)
        tag = uuid.uuid4().hex[:8]
        base = Settings(
            event_store=dsn, stream=f"kafka://{broker.bootstrap}", clickhouse=single.url,
            kafka_topic=f"scale-{tag}", kafka_dead_letter_topic=f"scale-dlq-{tag}",
            kafka_partitions=PARTITIONS, projector_batch_size=5000,
        )  # fmt: skip
        relay_all(base)
        result["projectors"] = {}
        for shards, projectors in itertools.product((1, 2), (1, 2)):
            name = f"p{projectors}_s{shards}_{tag}"
            url = with_db(single.url if shards == 1 else cluster.url, name)
            cfg = base.model_copy(
                update={"clickhouse": url, "kafka_group": name,
                        "clickhouse_cluster": cluster.name if shards == 2 else ""}
            )  # fmt: skip
            key = f"{projectors} projector(s), {shards} shard(s)"
            result["projectors"][key] = projector_rate(cfg, projectors, head)
        one = ServerStore(with_db(single.url, f"p1_s1_{tag}"))
        result["clickhouse_bytes_per_event"] = bytes_per_event(one, f"p1_s1_{tag}", head)
        one.close()
        result["latency"] = big_latency(args, single.url, cluster)
    result["load_average_end"] = os.getloadavg()
    return result


def big_latency(args: argparse.Namespace, single_url: str, cluster: Any) -> dict[str, Any]:
    """Load `size` events of `districts` large districts into one node and into the cluster
    (the projectors' writer), then time the metrics on each."""
    specs = district_specs(args.size, args.districts)
    out: dict[str, Any] = {"districts": args.districts}
    stores: dict[str, ProjectionStore] = {
        "1 shard": ServerStore(with_db(single_url, "scale_big")),
        "2 shards": ClusterStore(with_db(cluster.url, "scale_big"), cluster.name),
    }
    for label, store in stores.items():
        events: Iterator[dict[str, Any]] = itertools.chain.from_iterable(stream(s) for s in specs)
        t0 = time.perf_counter()
        head = load_stream(store, events, 200_000)
        out[label] = {
            "events": head,
            "load_seconds": round(time.perf_counter() - t0, 1),
            "metrics": latency(store, specs[:2], head, args.repeats),
            "scan_curve": scan_curve(store, specs[0], head, args.repeats),
        }
        store.close()
    return out


def main() -> None:
    from tutorledger.bench.preflight import local_services_on_path

    parser = argparse.ArgumentParser(prog="python -m tutorledger.bench.cluster")
    parser.add_argument("--districts", type=int, default=4)
    parser.add_argument("--students", type=int, default=1500)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--size", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    local_services_on_path()
    from devtools import services

    print(json.dumps(run(args, services), indent=2))  # noqa: T201 - the report


if __name__ == "__main__":
    main()
