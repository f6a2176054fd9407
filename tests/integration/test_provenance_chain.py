"""Provenance is chained (SQLite and PostgreSQL): a ledger holding events stored before
provenance, events posted by two emitters and events of an import verifies; editing or
removing an event's provenance in the store makes `verify` fail at that very position."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from builders import at_minute as event
from test_audit import Store, positions_of

from tutorledger.domain.ledger import Ledger
from tutorledger.domain.provenance import by_import, by_key
from tutorledger.infra.eventstore.audit import envelope_of, verify_chain
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

D = "prov-chain"
SOURCE = "ab" * 32


def lifecycle(session: str, student: str) -> list[dict[str, Any]]:
    return [
        event(D, session, "requested", 0, school_id="sch-1", student_id=student, grade=5,
              subject="algebra"),
        event(D, session, "matched", 1, tutor_id="tut-1"),
        event(D, session, "completed", 30, outcome="resolved"),
    ]  # fmt: skip


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    app = open_ledger(Settings(event_store=store_url))
    app.record_events(lifecycle("legacy", "stu-0"))  # as an older release stored it: none
    app.record_events(lifecycle("a", "stu-1"), by_key("0123456789abcdef", "vendor-a"))
    app.record_events(lifecycle("b", "stu-2"), by_key("fedcba9876543210", "inhouse"))
    app.record_events(lifecycle("c", "stu-3"), by_import("vendor-a", SOURCE))
    yield app
    app.close()


def stored(ledger: Ledger) -> list[tuple[int, dict[str, Any]]]:
    rows = ledger.recorder.chained_events(D, 0, 1000)  # type: ignore[attr-defined]
    return [(r[0], envelope_of(ledger.mapper, r[3])) for r in rows]


def test_provenance_is_stored_and_the_mixed_ledger_verifies(ledger: Ledger) -> None:
    found = [e.get("provenance") for _, e in stored(ledger)]
    assert found[:3] == [None] * 3
    assert found[3:6] == [{"format": 1, "via": "api", "key_id": "0123456789abcdef",
                           "provider": "vendor-a"}] * 3  # fmt: skip
    assert {p["provider"] for p in found[6:9] if p} == {"inhouse"}
    assert found[9:] == [{"format": 1, "via": "import", "provider": "vendor-a",
                          "source_sha256": SOURCE}] * 3  # fmt: skip
    report = verify_chain(ledger.recorder, ledger.mapper, D)
    assert report.ok and report.checked == 12


def _edit(state: bytes, change: Any) -> bytes:
    doc = json.loads(state)
    change(doc["envelope"])
    return json.dumps(doc, separators=(",", ":")).encode()


EDITS = {
    "provider": (4, lambda e: e["provenance"].update(provider="vendor-b")),
    "key_id": (7, lambda e: e["provenance"].update(key_id="0000000000000000")),
    "source": (10, lambda e: e["provenance"].update(source_sha256="cd" * 32)),
    "removed": (5, lambda e: e.pop("provenance")),
    "added": (1, lambda e: e.update(provenance={"format": 1, "via": "api",
                                                "key_id": "0123456789abcdef"})),
}  # fmt: skip


@pytest.mark.parametrize("case", list(EDITS))
def test_editing_provenance_breaks_verify_at_that_position(
    ledger: Ledger, store_url: str, case: str
) -> None:
    index, change = EDITS[case]
    target = positions_of(ledger, D)[index]
    store = Store(store_url, ledger)
    store.set_state(target, _edit(store.state(target), change))
    report = verify_chain(ledger.recorder, ledger.mapper, D)
    assert not report.ok
    assert (report.first_bad_position, report.problem) == (target, "hash_mismatch")
    assert report.checked == index
