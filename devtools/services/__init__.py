"""Real PostgreSQL, Kafka-protocol (tansu) and ClickHouse servers for tests, benchmarks and
development on a machine without Docker.

Development tooling, outside the installed package (``setup.py`` ships only the runtime's
folders): it lives in the source checkout, and production processes never import it. Tests
and ``tutorledger bench --with-local-services`` (from a checkout) start servers through it
on free loopback ports and stop them by pid afterwards.
Command line: ``python -m devtools.services install|check|run``.
"""

from .cluster import ClickHouseCluster, start_clickhouse_cluster
from .postgres import (
    TEST_DB_PREFIX,
    PostgresServer,
    create_database,
    drop_database,
    ensure_postgres,
)
from .procs import ServiceError, free_port
from .servers import (
    ClickHouseServer,
    TansuBroker,
    create_topic,
    ensure_clickhouse_installed,
    main,
    start_clickhouse,
    start_tansu,
    tansu_binary,
)

__all__ = [
    "TEST_DB_PREFIX",
    "ClickHouseCluster",
    "ClickHouseServer",
    "PostgresServer",
    "ServiceError",
    "TansuBroker",
    "create_database",
    "create_topic",
    "drop_database",
    "ensure_clickhouse_installed",
    "ensure_postgres",
    "free_port",
    "main",
    "start_clickhouse",
    "start_clickhouse_cluster",
    "start_tansu",
    "tansu_binary",
]
