"""A figure request's query budget on a real ClickHouse 18.16 server: `max_execution_time`
sent with the query interrupts it (the chdb side is in tests/unit/test_bounded.py)."""

from __future__ import annotations

import pytest

from tutorledger.domain.errors import QueryTimeout
from tutorledger.infra.clickhouse import ServerStore, query_budget


def test_server_interrupts_a_query_past_its_budget(clickhouse_url: str) -> None:
    store = ServerStore(clickhouse_url)
    try:
        with query_budget(1), pytest.raises(QueryTimeout):
            store.execute("SELECT sum(number) FROM numbers(100000000000)")
        assert store.execute("SELECT 1") == [(1,)]  # the connection serves the next query
    finally:
        store.close()
