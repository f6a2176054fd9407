"""The two recorders a Ledger runs on, as one type, and the typed way to reach them.

`Ledger.recorder` is typed by the eventsourcing library as its abstract
`ApplicationRecorder`; what the ledger index, the vault and the page reads add lives on our
subclasses. `ledger_recorder` narrows to them (a store configured with any other recorder
is refused here, by name, rather than failing later on a missing method), so callers hold a
`LedgerRecorder` and mypy checks every port they assign it to against both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import ApplicationRecorder
from psycopg.rows import tuple_row

from tutorledger.domain.ledger import Ledger
from tutorledger.infra.eventstore.postgres import PostgresLedgerRecorder
from tutorledger.infra.eventstore.sqlite import SQLiteLedgerRecorder

LedgerRecorder = SQLiteLedgerRecorder | PostgresLedgerRecorder


def ledger_recorder(recorder: ApplicationRecorder) -> LedgerRecorder:
    """`recorder` as one of ours; TypeError for a recorder that keeps no ledger index."""
    if isinstance(recorder, SQLiteLedgerRecorder | PostgresLedgerRecorder):
        return recorder
    raise TypeError(f"{type(recorder).__name__} is not a tutorledger recorder (no ledger index)")


def store_of(ledger: Ledger) -> LedgerRecorder:
    """The ledger's recorder, typed as ours."""
    return ledger_recorder(ledger.recorder)


@contextmanager
def tuple_cursor(recorder: LedgerRecorder, commit: bool) -> Iterator[Any]:
    """A cursor in one transaction of the store, tuple rows on both backends: the side
    tables kept beside the ledger (disclosures, sign-outs) read and write through it."""
    with recorder.datastore.transaction(commit=commit) as cursor:
        if isinstance(recorder, SQLiteLedgerRecorder):
            yield cursor
        else:
            with cursor.connection.cursor(row_factory=tuple_row) as inner:
                yield inner
