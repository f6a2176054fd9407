"""Which ledger positions exist, read from the ledger index alone (no event bodies).

Used to find events a downstream copy lacks: counting and listing positions touches only
the index's primary key, so a window of a large ledger is cheap to compare.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import ApplicationRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL

from tutorledger.infra.eventstore.recorders import ledger_recorder
from tutorledger.infra.eventstore.sqlite import SQLiteLedgerRecorder

COUNT = "SELECT position / {w} AS bucket, count(*) FROM {t} WHERE position <= {p} GROUP BY bucket"
LIST = "SELECT position FROM {t} WHERE position > {p} AND position <= {p} ORDER BY position"


def _query(
    store: ApplicationRecorder, template: str, width: int, params: list[int]
) -> list[tuple[Any, ...]]:
    recorder = ledger_recorder(store)
    if isinstance(recorder, SQLiteLedgerRecorder):
        sql = template.format(w=int(width), t="ledger_index", p="?")
        with recorder.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [tuple(r) for r in c.fetchall()]
    composed = SQL(template.format(w=int(width), t="{}", p="%s")).format(recorder.index_table)
    with recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
        curs.execute(composed, params)
        return list(curs.fetchall())


def bucket_counts(recorder: ApplicationRecorder, upto: int, width: int) -> dict[int, int]:
    """Indexed events per window of `width` positions (window b = [b*width, (b+1)*width))."""
    rows = _query(recorder, COUNT, width, [upto])
    return {int(b): int(n) for b, n in rows}


def positions_between(recorder: ApplicationRecorder, after: int, upto: int) -> list[int]:
    """Indexed positions in (after, upto], ascending."""
    return [int(r[0]) for r in _query(recorder, LIST, 1, [after, upto])]
