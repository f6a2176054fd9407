"""Cluster mode on real servers: two ClickHouse 18.16 processes as two shards, fed by two
projectors from a four-partition topic. The cluster's figures equal one node's and the
reference fold; a shard restarted mid-stream loses nothing and counts nothing twice."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pytest
from pipeline import group_consumer, kafka_settings, wait_caught_up
from reference import participation as reference_participation
from reference_metrics import satisfaction as reference_satisfaction
from reference_metrics import wait_times as reference_wait_times
from waiting import wait_until

from devtools import services
from tutorledger.bench.district import District, DistrictSpec, generate
from tutorledger.consumers.kafka_projector import KafkaProjector
from tutorledger.consumers.projector import LedgerFollower
from tutorledger.consumers.relay import Relay
from tutorledger.domain.errors import Unavailable
from tutorledger.infra.clickhouse import ClusterStore, ProjectionStore, ServerStore
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.kafka import ensure_topics, make_producer
from tutorledger.infra.settings import Settings
from tutorledger.projections.demand import demand
from tutorledger.projections.engagement import engagement
from tutorledger.projections.filters import Filters
from tutorledger.projections.participation import participation
from tutorledger.projections.satisfaction import satisfaction
from tutorledger.projections.schema import migrate
from tutorledger.projections.wait_times import wait_times

TZ = "America/New_York"
# Four districts, two on each shard of a two-shard cluster (cityHash64 % 2 decides; the
# spread is asserted, so a change there fails loudly instead of testing one shard).
DISTRICTS = ("d-state-1", "d-state-2", "d-state-3", "d-state-5")
PARTITIONS = 4


@pytest.fixture(scope="module")
def districts() -> list[District]:
    return [
        generate(DistrictSpec(district_id=d, students=160, schools=3, days=7, seed=i))
        for i, d in enumerate(DISTRICTS)
    ]


def load(store_url: str, districts: list[District], part: str = "all") -> None:
    """Record each district's schools and events: "all", its "first" half or the "rest"."""
    ledger = open_ledger(Settings(event_store=store_url))
    try:
        for district in districts:
            half = len(district.events) // 2
            if part != "rest":
                for s in district.schools:
                    ledger.put_school(
                        district.spec.district_id, s["school_id"], s["name"],
                        s["enrollment"], s["as_of"],
                    )  # fmt: skip
            events = {"all": district.events, "first": district.events[:half]}.get(
                part, district.events[half:]
            )
            for i in range(0, len(events), 1000):
                ledger.record_events(events[i : i + 1000])
    finally:
        ledger.close()


def ledger_head(store_url: str) -> int:
    ledger = open_ledger(Settings(event_store=store_url))
    try:
        return int(ledger.recorder.max_notification_id() or 0)
    finally:
        ledger.close()


def highest(store: ProjectionStore, table: str) -> int:
    return int(store.execute(f"SELECT max(position) FROM {table}")[0][0] or 0)


def figures(store: ProjectionStore, district_id: str, head: int) -> dict[str, Any]:
    """Several metrics of one district as of `head`: one of each shape of query."""
    f = Filters(district_id, head, TZ)
    return {
        "participation": participation(store, f),
        "demand": demand(store, f, ("school_id",)),
        "wait_times": wait_times(store, f, ()),
        "satisfaction": satisfaction(store, f, ()),
        "engagement": engagement(store, f),
    }


def plain(value: Any) -> Any:
    """Reference figures as the metric functions return them (dates as ISO text)."""
    return json.loads(json.dumps(value, default=str))


def stored_count(districts: list[District]) -> int:
    return sum(len({e["event_id"] for e in d.events}) + len(d.schools) for d in districts)


def exact(store: ProjectionStore) -> tuple[int, int, int, int]:
    """(rows, positions) of the raw table (FINAL) and of session_facts (no FINAL: the
    writers' own check must have kept copies out)."""
    raw = store.execute("SELECT count(), uniqExact(position) FROM ledger_events FINAL")[0]
    facts = store.execute("SELECT count(), uniqExact(position) FROM session_facts_g1")[0]
    return int(raw[0]), int(raw[1]), int(facts[0]), int(facts[1])


@dataclass
class Pipeline:
    settings: Settings
    stores: list[ProjectionStore]
    projectors: list[KafkaProjector]
    relay: Relay


@contextmanager
def cluster_pipeline(settings: Settings, projectors: int = 2) -> Iterator[Pipeline]:
    """A relay and `projectors` group members, each with its own cluster store."""
    ensure_topics(settings)
    stores: list[ProjectionStore] = [ClusterStore(settings.clickhouse, settings.clickhouse_cluster)]
    migrate(stores[0])
    stores += [
        ClusterStore(settings.clickhouse, settings.clickhouse_cluster)
        for _ in range(projectors - 1)
    ]
    consumers = [group_consumer(settings) for _ in range(projectors)]
    dlq = make_producer(settings)
    members = [
        KafkaProjector(c, s, dlq, settings.kafka_dead_letter_topic, 300, 0.5)
        for c, s in zip(consumers, stores, strict=True)
    ]
    ledger = open_ledger(settings)
    producer = make_producer(settings)
    relay = Relay(ledger, producer, settings.kafka_topic, ledger.factory.tracking_recorder(), 400)
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in (relay, *members)]
    for t in threads:
        t.start()
    try:
        yield Pipeline(settings, stores, members, relay)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        for c in consumers:
            c.close()
        producer.close(timeout=5)
        dlq.close(timeout=5)
        for s in stores:
            s.close()
        ledger.close()


def single_node(pg_dsn: str, clickhouse_url: str) -> ServerStore:
    """The same ledger projected into one ClickHouse node (the embedded follower)."""
    store = ServerStore(clickhouse_url)
    migrate(store)
    ledger = open_ledger(Settings(event_store=pg_dsn))
    try:
        LedgerFollower(ledger, store, batch_size=500).catch_up()
    finally:
        ledger.close()
    return store


def test_migrations_reach_every_shard_and_the_front_reads_them_all(
    clickhouse_cluster: services.ClickHouseCluster, clickhouse_cluster_url: str, clickhouse_url: str
) -> None:
    store = ClusterStore(clickhouse_cluster_url, clickhouse_cluster.name)
    one = ServerStore(clickhouse_url)
    try:
        migrate(store)
        migrate(one)
        assert migrate(store) == []  # recorded once: a second run applies nothing

        def schema(s: ProjectionStore) -> dict[str, list[Any]]:
            tables = sorted(str(r[0]) for r in s.execute("SHOW TABLES"))
            return {t: [r[:2] for r in s.execute(f"DESCRIBE TABLE {t}")] for t in tables}

        assert [schema(node) for node in store.nodes] == [schema(one)] * 2
        assert schema(store) == schema(one)  # the Distributed tables, as the metrics see them
        engines = store.execute(
            "SELECT DISTINCT engine FROM system.tables WHERE database = %(db)s",
            {"db": store.front_database},
        )
        assert engines == [("Distributed",)]
    finally:
        store.close()
        one.close()


def test_rows_go_to_the_shard_a_distributed_insert_would_choose(
    clickhouse_cluster: services.ClickHouseCluster, clickhouse_cluster_url: str
) -> None:
    store = ClusterStore(clickhouse_cluster_url, clickhouse_cluster.name)
    try:
        store.execute(
            "CREATE TABLE probe (district_id String, n UInt32) ENGINE = MergeTree ORDER BY n"
        )
        ids = [f"d-{i}" for i in range(40)] + list(DISTRICTS)
        # ClickHouse's own routing: an insert through the Distributed table, synchronous.
        client = store._front._client()  # noqa: SLF001 - the test's one raw insert
        client.execute(
            f"INSERT INTO {store.front_database}.probe VALUES",
            [(d, i) for i, d in enumerate(ids)],
            settings={"insert_distributed_sync": 1},
        )
        landed = {
            str(d): index
            for index, node in enumerate(store.nodes)
            for (d,) in node.execute("SELECT district_id FROM probe")
        }
        assert landed == store.owner(ids)
        assert sorted(store.owner(list(DISTRICTS)).values()) == [0, 0, 1, 1]
    finally:
        store.close()


def test_cluster_figures_equal_one_node_and_the_reference(
    pg_dsn: str,
    kafka_bootstrap: str,
    clickhouse_cluster: services.ClickHouseCluster,
    clickhouse_cluster_url: str,
    clickhouse_url: str,
    districts: list[District],
) -> None:
    load(pg_dsn, districts)
    settings = kafka_settings(
        pg_dsn, kafka_bootstrap, clickhouse_cluster_url,
        clickhouse_cluster=clickhouse_cluster.name, kafka_partitions=PARTITIONS,
    )  # fmt: skip
    with cluster_pipeline(settings) as run:
        head = wait_caught_up(settings, run.stores[0])
        assert all(p.projected > 0 for p in run.projectors), [p.projected for p in run.projectors]
    cluster = ClusterStore(clickhouse_cluster_url, clickhouse_cluster.name)
    one = single_node(pg_dsn, clickhouse_url)
    try:
        stored = stored_count(districts)
        sessions_facts = exact(one)[2]
        assert exact(cluster) == exact(one) == (stored, stored, sessions_facts, sessions_facts)
        on_shards = [
            node.execute("SELECT DISTINCT district_id FROM ledger_events") for node in cluster.nodes
        ]
        assert all(len(found) == 2 for found in on_shards), on_shards  # both shards hold two
        for district in districts:
            d = district.spec.district_id
            got = plain(figures(cluster, d, head))
            assert got == plain(figures(one, d, head)), d
            assert got["participation"] == pytest.approx(
                reference_participation(district.events, district.schools, d, TZ)
            )
            assert got["wait_times"] == plain(reference_wait_times(district.events, d, TZ))
            assert got["satisfaction"] == plain(reference_satisfaction(district.events, d, TZ))
    finally:
        cluster.close()
        one.close()


def test_a_shard_restarted_mid_stream_loses_nothing_and_counts_nothing_twice(
    pg_dsn: str,
    kafka_bootstrap: str,
    clickhouse_cluster: services.ClickHouseCluster,
    clickhouse_cluster_url: str,
    districts: list[District],
) -> None:
    settings = kafka_settings(
        pg_dsn, kafka_bootstrap, clickhouse_cluster_url,
        clickhouse_cluster=clickhouse_cluster.name, kafka_partitions=PARTITIONS,
    )  # fmt: skip
    load(pg_dsn, districts, "first")
    with cluster_pipeline(settings) as run:
        cluster = run.stores[0]
        assert isinstance(cluster, ClusterStore)
        wait_until(lambda: highest(cluster, "ledger_events") > 0, "the first rows on the cluster")
        clickhouse_cluster.stop_shard(1)  # mid-stream: the rest arrives while it is down
        try:
            with pytest.raises(Unavailable):  # no figures from half the shards
                participation(cluster, Filters(DISTRICTS[0], 1, TZ))
            load(pg_dsn, districts, "rest")
            head = ledger_head(pg_dsn)
            # The rest is on the topic while the shard is down: the projectors meet the
            # outage (a batch reads every shard first, for its redelivery check) and retry.
            wait_until(lambda: run.relay.position >= head, "the relay to publish the rest")
        finally:
            clickhouse_cluster.start(1)
        head = wait_caught_up(settings, cluster)
        stored = stored_count(districts)
        raw_rows, raw_positions, fact_rows, fact_positions = exact(cluster)
        assert (raw_rows, raw_positions) == (stored, stored)
        assert fact_rows == fact_positions
        for district in districts:
            d = district.spec.district_id
            assert figures(cluster, d, head)["participation"] == pytest.approx(
                reference_participation(district.events, district.schools, d, TZ)
            )


def test_the_embedded_follower_refuses_a_cluster(
    pg_dsn: str, clickhouse_cluster: services.ClickHouseCluster, clickhouse_cluster_url: str
) -> None:
    store = ClusterStore(clickhouse_cluster_url, clickhouse_cluster.name)
    ledger = open_ledger(Settings(event_store=pg_dsn))
    try:
        with pytest.raises(ValueError, match="Kafka stream"):
            LedgerFollower(ledger, store)
    finally:
        ledger.close()
        store.close()


def test_a_table_another_process_made_is_read_through_its_own_front(
    clickhouse_cluster: services.ClickHouseCluster, clickhouse_cluster_url: str
) -> None:
    reader = ClusterStore(clickhouse_cluster_url, clickhouse_cluster.name)
    writer = ClusterStore(
        urlparse(clickhouse_cluster_url)
        ._replace(netloc=f"default@127.0.0.1:{clickhouse_cluster.servers[1].port}")
        .geturl(),
        clickhouse_cluster.name,
    )  # another front: the second shard's server
    try:
        writer.execute(
            "CREATE TABLE later (district_id String, n UInt32) ENGINE = MergeTree ORDER BY n"
        )
        writer.insert("later", ("district_id", "n"), [(d, i) for i, d in enumerate(DISTRICTS)])
        assert reader.execute("SELECT count() FROM later") == [(len(DISTRICTS),)]
    finally:
        reader.close()
        writer.close()
