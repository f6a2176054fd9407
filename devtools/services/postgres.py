"""The shared Debian PostgreSQL 15 cluster, reached over TCP as the ``tutorledger`` role.

Unlike tansu and ClickHouse this server is not private to one test session: it is started
only if it is down, and stopped only by whoever started it once nobody else is using it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from tutorledger.bench.common import drop_database_at

from .procs import ServiceError, run

log = logging.getLogger(__name__)

PG_VERSION, PG_CLUSTER = "15", "main"
PG_ROLE = PG_PASSWORD = "tutorledger"
LOOPBACK = "127.0.0.1"
TEST_DB_PREFIX = "tl_test_"  # pg databases the test fixtures create; a live one means "in use"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass
class PostgresServer:
    """The Debian cluster ``15 main``, reached over TCP with the ``tutorledger`` role."""

    port: int
    started_by_us: bool = False
    host: str = LOOPBACK

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_ROLE}:{PG_PASSWORD}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the cluster only if we started it and no other session or test DB uses it."""
        if not self.started_by_us:
            return
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type ="
                " 'client backend' AND pid <> pg_backend_pid()) + (SELECT count(*) FROM"
                " pg_database WHERE datname LIKE %s)",
                (TEST_DB_PREFIX + "%",),
            ).fetchone()
        if row and row[0]:
            log.info("leaving PostgreSQL running: %d other users", row[0])
            return
        run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, PG_CLUSTER, "stop"])
        self.started_by_us = False


def postgres_status() -> tuple[int, bool]:
    """Port (from the cluster's own config) and whether the cluster is online."""
    if shutil.which("pg_lsclusters") is None:
        raise ServiceError("PostgreSQL is not installed: apt-get install postgresql")
    for line in run(["pg_lsclusters", "-h"]).splitlines():
        parts = line.split()
        if parts[:2] == [PG_VERSION, PG_CLUSTER]:
            return int(parts[2]), parts[3].startswith("online")
    raise ServiceError(f"no PostgreSQL cluster {PG_VERSION}/{PG_CLUSTER} (pg_lsclusters)")


def _create_role(port: int) -> None:
    """Give the ``tutorledger`` role a password via peer auth as postgres (needs root)."""
    stmt = (
        f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_ROLE}') THEN "
        f"CREATE ROLE {PG_ROLE}; END IF; END$$; "
        f"ALTER ROLE {PG_ROLE} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}';"
    )
    psql = ["psql", "-X", "-q", "-p", str(port), "-d", "postgres", "-v", "ON_ERROR_STOP=1"]
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    run([*prefix, *psql, "-c", stmt], timeout=60)


def ensure_postgres(timeout: float = 30.0) -> PostgresServer:
    """Start the cluster if down and make sure the ``tutorledger`` role can log in over TCP."""
    port, online = postgres_status()
    server = PostgresServer(port)
    if not online:
        try:
            run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, PG_CLUSTER, "start"])
            server.started_by_us = True
        except ServiceError:
            if not postgres_status()[1]:  # a concurrent session may have just started it
                raise
    deadline, role_done = time.monotonic() + timeout, False
    while True:
        try:
            psycopg.connect(server.dsn(), connect_timeout=5).close()
            return server
        except psycopg.OperationalError as exc:
            if "password authentication failed" in str(exc) and not role_done:
                _create_role(port)
                role_done = True
            elif time.monotonic() > deadline:
                raise ServiceError(f"cannot log in to PostgreSQL on port {port}: {exc}") from exc
            else:
                time.sleep(0.2)


def _checked_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise ValueError(f"database name must match {_DB_NAME.pattern}: {name!r}")
    return name


def create_database(name: str, server: PostgresServer | None = None) -> str:
    """Create an empty database owned by ``tutorledger`` and return its DSN."""
    server = server or PostgresServer(postgres_status()[0])
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_checked_name(name))))
    return server.dsn(name)


def drop_database(name: str, server: PostgresServer | None = None, wait: float = 120) -> None:
    """Drop one of this cluster's databases even if a leaked connection still holds it."""
    server = server or PostgresServer(postgres_status()[0])
    drop_database_at(server.dsn(), _checked_name(name), wait)


def create_database_if_missing(name: str, server: PostgresServer) -> str:
    """The developer database survives ``run`` restarts, unlike per-test databases."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return server.dsn(name)
    return create_database(name, server)
