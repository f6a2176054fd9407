"""Shared fixtures: real PostgreSQL, tansu (Kafka protocol) and ClickHouse 18.16 servers.

Servers start lazily, only when a test asks for one, on free loopback ports, and are
stopped by pid when the session ends. A server that cannot be had skips the tests that need
it, loudly; with ``TUTORLEDGER_REQUIRE_SERVICES=1`` (CI) it fails them instead, so a missing
component can never pass as a green run.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar
from urllib.parse import urlparse

import pytest

from devtools import services

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0 loads its protocol schemas with deprecated importlib.resources calls.
    config.addinivalue_line(
        "filterwarnings", "ignore:(read|open)_text is deprecated:DeprecationWarning"
    )


class ServiceUnavailableWarning(UserWarning):
    """A real server needed by some tests could not be installed or started."""


def _unavailable(request: pytest.FixtureRequest, what: str, exc: BaseException) -> NoReturn:
    reason = f"{what} unavailable: {type(exc).__name__}: {exc}"
    if os.environ.get("TUTORLEDGER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (TUTORLEDGER_REQUIRE_SERVICES=1)", pytrace=False)
    warnings.warn(reason, ServiceUnavailableWarning, stacklevel=3)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # else fixture-time output is swallowed
            reporter.write_line(f"\nWARNING: {reason}; SKIPPING tests that need it", yellow=True)
    pytest.skip(reason)


def _start(request: pytest.FixtureRequest, what: str, start: Callable[[], T]) -> T:
    """Start a server, turning any failure into the skip-or-fail policy above."""
    try:
        return start()
    except Exception as exc:  # any failure means "no such server here"
        error = exc
    _unavailable(request, what, error)  # outside ``except``: no chained traceback


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[services.PostgresServer]:
    """The local PostgreSQL 15 cluster (started if down; stopped after only if we started it)."""
    server = _start(request, "PostgreSQL", services.ensure_postgres)
    yield server
    server.stop()


@pytest.fixture
def pg_dsn(pg_server: services.PostgresServer) -> Iterator[str]:
    """DSN of a fresh, empty database for this test only; dropped afterwards."""
    name = f"{services.TEST_DB_PREFIX}{uuid.uuid4().hex}"
    dsn = services.create_database(name, pg_server)
    yield dsn
    services.drop_database(name, pg_server)


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """``host:port`` of a memory-backed tansu broker shared by the session.

    Topics outlive tests, so tests should use uniquely named topics.
    """
    broker = _start(request, "tansu Kafka broker", services.start_tansu)
    yield broker.bootstrap
    broker.stop()


@pytest.fixture(scope="session")
def clickhouse_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """``clickhouse://default@127.0.0.1:P/default`` of a private ClickHouse 18.16 server."""
    server = _start(request, "ClickHouse server", services.start_clickhouse)
    yield server.url
    server.stop()


@pytest.fixture
def clickhouse_url(clickhouse_server: str) -> Iterator[str]:
    """``clickhouse://default@127.0.0.1:P/t_<hex>``: a fresh database, dropped afterwards."""
    from clickhouse_driver import Client

    parsed = urlparse(clickhouse_server)
    name = f"t_{uuid.uuid4().hex}"
    client = Client(host=parsed.hostname, port=parsed.port, user="default")
    try:
        client.execute(f"CREATE DATABASE {name}")
        yield parsed._replace(path=f"/{name}").geturl()
        client.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        client.disconnect()


@pytest.fixture(scope="session")
def clickhouse_cluster(request: pytest.FixtureRequest) -> Iterator[services.ClickHouseCluster]:
    """Two private ClickHouse 18.16 servers, the two shards of one remote_servers cluster."""
    cluster = _start(request, "ClickHouse cluster", services.start_clickhouse_cluster)
    yield cluster
    cluster.stop()


@pytest.fixture
def clickhouse_cluster_url(clickhouse_cluster: services.ClickHouseCluster) -> Iterator[str]:
    """The first shard's ``clickhouse://…/t_<hex>``: a fresh database on every shard (with
    the ``_cluster`` one cluster mode adds), dropped on every shard afterwards."""
    from clickhouse_driver import Client

    name = f"t_{uuid.uuid4().hex}"
    yield urlparse(clickhouse_cluster.url)._replace(path=f"/{name}").geturl()
    for server in clickhouse_cluster.servers:
        client = Client(host=server.host, port=server.port, user="default")
        try:
            for database in (f"{name}_cluster", name):
                client.execute(f"DROP DATABASE IF EXISTS {database}")
        finally:
            client.disconnect()


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One chdb data dir for the whole run: chdb allows a single data dir per process."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def chdb_url(chdb_dir: Path) -> str:
    """``chdb://DIR?database=t_<hex>``: a fresh database inside the run's chdb dir."""
    return f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}"
