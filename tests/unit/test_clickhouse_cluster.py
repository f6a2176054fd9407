"""Cluster mode's plain parts: schema statements recognised, shards chosen as ClickHouse does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.services.cluster import cluster_xml
from tutorledger.infra.clickhouse_cluster import (
    Ddl,
    ShardMap,
    ddl_of,
    distributed_sql,
    replicated_engine,
)
from tutorledger.infra.settings import Settings
from tutorledger.projections.schema import CREATE_VERSIONS_TABLE_SQL, migrations, statements


def test_every_shipped_migration_statement_is_one_the_cluster_runs_on_every_shard() -> None:
    for _, name, sql in migrations():
        for statement in statements(sql):
            ddl = ddl_of(statement)
            assert ddl is not None and ddl.kind in ("create", "add_column"), (name, statement)
    assert ddl_of(CREATE_VERSIONS_TABLE_SQL) == Ddl("create", ("schema_versions",))


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE TABLE IF NOT EXISTS session_facts_g2 AS session_facts_g1",
         Ddl("create", ("session_facts_g2",))),
        ("ALTER TABLE session_facts_g1 ADD COLUMN matched_us Int64 DEFAULT -1",
         Ddl("add_column", ("session_facts_g1",), "matched_us")),
        ("DROP TABLE IF EXISTS ledger_events_old", Ddl("drop", ("ledger_events_old",))),
        ("RENAME TABLE ledger_events TO ledger_events_old, ledger_events_rebuild TO ledger_events",
         Ddl("rename", ("ledger_events", "ledger_events_old", "ledger_events_rebuild",
                        "ledger_events"))),
        ("SELECT max(position) FROM ledger_events", None),
        ("SHOW TABLES", None),
        ("EXISTS TABLE schema_migrations", None),
        ("DESCRIBE TABLE ledger_events", None),
    ],
)  # fmt: skip
def test_schema_statements_and_queries_are_told_apart(sql: str, expected: Ddl | None) -> None:
    assert ddl_of(sql) == expected


@pytest.mark.parametrize(
    "sql", ["TRUNCATE TABLE ledger_events", "OPTIMIZE TABLE ledger_events FINAL",
            "ALTER TABLE ledger_events DELETE WHERE 1"],
)  # fmt: skip
def test_a_schema_statement_it_cannot_spread_is_refused(sql: str) -> None:
    with pytest.raises(ValueError, match="every shard"):
        ddl_of(sql)


def test_only_tables_with_a_district_get_a_sharding_key() -> None:
    sharded = distributed_sql("c", "db", "db_cluster", "ledger_events", sharded=True)
    assert sharded == (
        "CREATE TABLE IF NOT EXISTS db_cluster.ledger_events AS db.ledger_events "
        "ENGINE = Distributed(c, db, ledger_events, cityHash64(district_id))"
    )
    control = distributed_sql("c", "db", "db_cluster", "stream_watermarks", sharded=False)
    assert control.endswith("Distributed(c, db, stream_watermarks)")


def test_shard_weights_take_consecutive_slots_in_order() -> None:
    shards = ShardMap([1, 2, 1])
    assert shards.total == 4
    assert [shards.shard(h) for h in range(8)] == [0, 1, 1, 2, 0, 1, 1, 2]


@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=1, max_value=8))
def test_equal_weights_are_the_hash_modulo_the_shard_count(city_hash: int, count: int) -> None:
    assert ShardMap([1] * count).shard(city_hash) == city_hash % count


def test_a_cluster_needs_a_shard_of_positive_weight() -> None:
    for weights in ([], [1, 0]):
        with pytest.raises(ValueError, match="at least one shard"):
            ShardMap(weights)


def test_cluster_mode_is_off_unless_named() -> None:
    assert Settings().clickhouse_cluster == ""
    named = Settings(clickhouse="clickhouse://h:9000/db", clickhouse_cluster="state")
    assert named.clickhouse_cluster == "state"


def test_the_test_cluster_config_names_each_server_as_one_shard_in_order() -> None:
    xml = cluster_xml("tl", [9101, 9102])
    assert xml.index("<port>9101</port>") < xml.index("<port>9102</port>")
    assert xml.count("<shard>") == 2 and "<tl>" in xml


def test_a_replicated_database_gets_replicated_engines_for_every_shipped_table() -> None:
    for _, _, sql in migrations():
        for statement in statements(sql):
            rewritten = replicated_engine(statement)
            if "ENGINE" in statement.upper():
                assert "ENGINE = Replicated" in rewritten, statement
                assert rewritten.count("MergeTree()") == 1, rewritten
            else:
                assert rewritten == statement
    assert replicated_engine(CREATE_VERSIONS_TABLE_SQL).endswith(
        "ENGINE = ReplicatedMergeTree() ORDER BY version"
    )
