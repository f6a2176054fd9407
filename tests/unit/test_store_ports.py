"""The store's ports: a Ledger reaches its index and the typed reads through our recorders,
and refuses a store configured with a recorder that keeps no ledger index."""

from __future__ import annotations

from pathlib import Path

import pytest

from tutorledger.domain.ledger import Ledger
from tutorledger.infra.eventstore.crypto import AesGcmCipher
from tutorledger.infra.eventstore.recorders import ledger_recorder, store_of
from tutorledger.infra.eventstore.sqlite import SQLiteLedgerRecorder
from tutorledger.infra.eventstore.store import open_ledger, store_env
from tutorledger.infra.settings import Settings


def test_the_index_and_the_typed_reads_are_the_ledgers_own_recorder(tmp_path: Path) -> None:
    ledger = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/ledger.db"))
    try:
        store = store_of(ledger)
        assert isinstance(store, SQLiteLedgerRecorder)
        assert store is ledger.recorder is ledger.index
        assert store.head("d-1") is None and store.event_states(0, 10) == []
    finally:
        ledger.close()


def test_a_store_without_our_recorder_is_refused_when_the_ledger_opens(tmp_path: Path) -> None:
    env = store_env(f"sqlite:///{tmp_path}/plain.db")
    del env["APPLICATION_RECORDER_TOPIC"]  # the library's own recorder: no ledger index
    with pytest.raises(TypeError, match="SQLiteApplicationRecorder is not a tutorledger recorder"):
        Ledger(env=env, cipher=AesGcmCipher(), index_of=ledger_recorder)
