"""Reuse of answers at a fixed ledger position: the same question twice costs one query.

An answer at position P reads only rows at positions ≤ P, and those rows never change once
projected, with two exceptions: `repair` adds rows a broker lost, and a redelivered copy
of a row lives until ClickHouse merges it away (the metrics read with FINAL, so the copy does
not change a figure, but it does change the count below). Either changes how many rows the
read models hold at or below P, so that count, with the generation, is the read models'
*state* at P (its `epoch`): a changed epoch recomputes, at worst needlessly. A query whose
parameters carry the epoch of its position (Filters.params adds it when the caller resolved
it, which it does only when the store can reuse an answer) is answered from memory when the
same SQL, parameters and epoch were answered before; any other query goes to ClickHouse.

This matters most for dashboard keys: each of their answers is checked against the answer
at the previous published position (api/http/published.py), which is yesterday's answer,
and their position moves once a day, so after the first view of a day a district page is
made from memory but for its epoch query.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from tutorledger.infra.clickhouse import Encoded, ProjectionStore, Row

EPOCH_PARAM = "epoch"
LARGEST = 20_000  # rows: a bigger answer (a student list, an export) is not kept

# Rows of every table an answer can read, at or below each position asked (one scan each:
# every table's key starts with the district, so the read stays inside it).
EPOCH_SQL = """
SELECT {counts} FROM (
    SELECT position FROM ledger_events WHERE district_id = %(district_id)s
    UNION ALL {read_models}
)
"""


def epoch_sql(tables: Sequence[str], positions: Sequence[int]) -> str:
    """The count at or below each position, over `ledger_events` and `tables` (code names)."""
    counts = ", ".join(f"countIf(position <= {int(p)})" for p in positions)
    read_models = " UNION ALL ".join(
        f"SELECT position FROM {table} WHERE district_id = %(district_id)s" for table in tables
    )
    return EPOCH_SQL.format(counts=counts, read_models=read_models)


def reuses(store: ProjectionStore) -> bool:
    """Whether `store` can answer from memory at all: without it, an epoch costs a query and
    saves none (a server with `TUTORLEDGER_ANSWER_CACHE_ROWS=0`, a CLI run)."""
    return isinstance(store, AnswerCache) and store.rows > 0


def epochs(
    store: ProjectionStore, generation: int, tables: Sequence[str], district_id: str,
    positions: Sequence[int],
) -> tuple[tuple[int, str], ...]:  # fmt: skip
    """(position, epoch) for each position: the generation and the rows at or below it."""
    wanted = sorted(set(positions))
    if not wanted:
        return ()
    (row,) = store.execute(epoch_sql(tables, wanted), {"district_id": district_id})
    return tuple((p, f"{generation}:{int(n)}") for p, n in zip(wanted, row, strict=True))


class AnswerCache:
    """A ProjectionStore that keeps the answers of queries carrying an epoch, least recently
    used first out, up to `rows` rows in all (a district page's answers hold a few hundred)."""

    def __init__(self, store: ProjectionStore, rows: int) -> None:
        self.store = store
        self.kind = store.kind
        self.rows = rows
        self.hits = 0
        self._kept: OrderedDict[Hashable, list[Row]] = OrderedDict()
        self._held = 0  # rows in _kept (an empty answer counts as one)
        self._lock = threading.Lock()

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        if self.rows <= 0 or not params or EPOCH_PARAM not in params:
            return self.store.execute(sql, params)
        key = (sql, tuple(sorted((k, repr(v)) for k, v in params.items())))
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                self.hits += 1
                return list(self._kept[key])
        rows = self.store.execute(sql, params)
        if len(rows) <= min(LARGEST, self.rows):
            self._keep(key, rows)
        return rows

    def _keep(self, key: Hashable, rows: list[Row]) -> None:
        with self._lock:
            if key in self._kept:
                return
            self._kept[key] = list(rows)
            self._held += max(len(rows), 1)
            while self._held > self.rows:
                _, dropped = self._kept.popitem(last=False)
                self._held -= max(len(dropped), 1)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.store.insert(table, columns, rows)

    def encode(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Encoded:
        return self.store.encode(table, columns, rows)

    def send(self, block: Encoded) -> None:
        self.store.send(block)

    def close(self) -> None:
        with self._lock:
            self._kept.clear()
            self._held = 0
        self.store.close()
