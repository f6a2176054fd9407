"""Everything under tests/integration needs a real server: mark it so ``-m 'not integration'``
gives a fast run. The server fixtures themselves live in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.schema import migrate

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item, not only ours, hence the path check.
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both event stores: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@pytest.fixture(params=["chdb", "clickhouse-18.16"])
def projections(request: pytest.FixtureRequest) -> Iterator[ProjectionStore]:
    """The same test on both ClickHouse engines: chdb in-process, then an 18.16 server."""
    url: str = request.getfixturevalue("chdb_url" if request.param == "chdb" else "clickhouse_url")
    store = open_projection_store(Settings(clickhouse=url))
    migrate(store)
    yield store
    store.close()
