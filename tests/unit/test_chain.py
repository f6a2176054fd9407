"""The per-district hash chain: `chain_hash` and the heads the ledger stores, recomputed here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from builders import at_minute as raw
from builders import recompute_chain

from tutorledger.domain.envelope import parse_envelope
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.eventstore.store import GENESIS_HASH, chain_hash, open_ledger
from tutorledger.infra.settings import Settings


def recompute(prev: str, position: int, event: dict[str, Any]) -> str:
    """The chain rule written out independently of the code under test."""
    record = json.dumps(
        {**event, "position": position}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(prev.encode() + b"\n" + record.encode()).hexdigest()


def requested(district: str, session: str, minute: int = 0, **extra: Any) -> dict[str, Any]:
    return raw(
        district,
        session,
        "requested",
        minute,
        school_id="sch-1",
        student_id="stu-1",
        grade=3,
        subject="Math",
        **extra,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    app = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/l.db"))
    yield app
    app.close()


# --- chain_hash itself --------------------------------------------------------------------------

SAMPLES: list[dict[str, Any]] = [
    parse_envelope(requested("d-1", "s-1")).canonical(),
    parse_envelope(requested("d-1", "s-2", topic="Álgebra — ñ, 分数 🧮")).canonical(),
    parse_envelope(
        raw(
            "d-1",
            "s-1",
            "surveyed",
            5,
            helped=False,
            rating=2,
            comment='quote " backslash \\ newline \n tab \t',
        )
    ).canonical(),
    {"b": 1, "a": {"z": [3, 2, 1], "y": None}, "c": 1.5, "d": True},
]


@pytest.mark.parametrize("event", SAMPLES)
@pytest.mark.parametrize("prev", [GENESIS_HASH, "f" * 64, hashlib.sha256(b"x").hexdigest()])
@pytest.mark.parametrize("position", [0, 1, 987_654_321])
def test_chain_hash_matches_independent_recomputation(
    prev: str, position: int, event: dict[str, Any]
) -> None:
    assert chain_hash(prev, position, event) == recompute(prev, position, event)


def test_genesis_is_64_zeros() -> None:
    assert GENESIS_HASH == "0" * 64


def test_chain_hash_depends_on_every_input() -> None:
    event = SAMPLES[0]
    base = chain_hash(GENESIS_HASH, 1, event)
    assert len(base) == 64 and int(base, 16) >= 0
    assert chain_hash("1" * 64, 1, event) != base
    assert chain_hash(GENESIS_HASH, 2, event) != base
    assert chain_hash(GENESIS_HASH, 1, {**event, "session_id": "s-9"}) != base
    assert chain_hash(GENESIS_HASH, 1, dict(reversed(list(event.items())))) == base  # key order


def test_chain_hash_does_not_modify_the_event() -> None:
    event = dict(SAMPLES[0])
    chain_hash(GENESIS_HASH, 7, event)
    assert "position" not in event and event == SAMPLES[0]


def test_non_ascii_is_hashed_as_utf8_not_escaped() -> None:
    event = SAMPLES[1]
    escaped = json.dumps({**event, "position": 1}, sort_keys=True, separators=(",", ":"))
    as_if_escaped = hashlib.sha256(GENESIS_HASH.encode() + b"\n" + escaped.encode()).hexdigest()
    assert chain_hash(GENESIS_HASH, 1, event) != as_if_escaped
    assert chain_hash(GENESIS_HASH, 1, event) == recompute(GENESIS_HASH, 1, event)


# --- the chain the ledger stores ----------------------------------------------------------------


def verify_district(ledger: Ledger, district: str) -> tuple[int, list[int], str]:
    """Recompute a district's chain from genesis; returns (rows, positions, head hash)."""
    rows = ledger.recorder.chained_events(district, 0, 10_000)  # type: ignore[attr-defined]
    positions, head = recompute_chain(ledger.mapper, rows, recompute, district)
    assert positions == sorted(positions)
    return len(rows), positions, head


def test_stored_chain_heads_recompute_per_district(ledger: Ledger) -> None:
    batches = [
        [
            requested("d-1", "s-1"),
            requested("d-2", "s-1", topic="Géométrie"),
            requested("d-1", "s-2", 1),
        ],
        [
            raw("d-1", "s-1", "matched", 2, tutor_id="t-1"),
            raw("d-2", "s-1", "matched", 3, tutor_id="t-2"),
            raw("d-2", "s-1", "completed", 9, outcome="partial"),
            raw("d-1", "s-1", "completed", 10),
            raw("d-1", "s-1", "surveyed", 11, helped=True, rating=5, comment="Très bien 👍"),
        ],
        [raw("d-1", "s-2", "cancelled", 4, reason="timeout")],
    ]
    for batch in batches:
        assert {o.status for o in ledger.record_events(batch)} == {"accepted"}
    ledger.put_school("d-2", "sch-1", "École Nord", {"3": 120, "4": 110}, date(2026, 1, 15))

    heads = {}
    for district, expected_rows in [("d-1", 6), ("d-2", 4)]:
        count, positions, head = verify_district(ledger, district)
        assert count == expected_rows
        assert ledger.recorder.head(district) == (positions[-1], head)  # type: ignore[attr-defined]
        heads[district] = head
    assert heads["d-1"] != heads["d-2"]
    # Every stored event is in exactly one district's chain.
    everything = ledger.recorder.chained_events(None, 0, 10_000)  # type: ignore[attr-defined]
    assert len(everything) == 10 == (ledger.recorder.max_notification_id())
    assert ledger.recorder.head("d-unknown") is None  # type: ignore[attr-defined]


def test_stored_event_is_the_sealed_canonical_envelope(ledger: Ledger) -> None:
    """The chain covers the stored form: the canonical envelope with the personal fields
    replaced by the student's token and one ciphertext, which opens back to the original."""
    sent = requested("d-1", "s-1", topic="Fractions")
    sent["occurred_at"] = "2026-03-02T10:00:00-05:00"
    ledger.record_events([sent])
    ((position, _, stored_hash, stored),) = ledger.recorder.chained_events("d-1", 0, 10)  # type: ignore[attr-defined]
    envelope = ledger.mapper.to_domain_event(stored).envelope  # type: ignore[attr-defined]
    canonical = parse_envelope(sent).canonical()
    payload = envelope["payload"]
    assert set(payload) == {"school_id", "grade", "subject", "student_token", "sealed"}
    assert {k: v for k, v in envelope.items() if k != "payload"} == {
        k: v for k, v in canonical.items() if k != "payload"
    }
    assert b"stu-1" not in stored.state and b"Fractions" not in stored.state
    assert envelope["occurred_at"] == "2026-03-02T15:00:00Z"
    assert payload["subject"] == "math"
    assert stored_hash == recompute(GENESIS_HASH, position, envelope)
    (opened,) = ledger.open_stored([envelope])
    assert opened.envelope == canonical and opened.erased == ()


def test_rejected_and_duplicate_events_do_not_extend_the_chain(ledger: Ledger) -> None:
    first = requested("d-1", "s-1")
    ledger.record_events([first])
    head = ledger.recorder.head("d-1")  # type: ignore[attr-defined]
    outcomes = ledger.record_events(
        [
            first,  # duplicate
            raw("d-1", "s-1", "surveyed", 1, helped=True, rating=3),  # invalid_transition
            raw("d-1", "s-9", "matched", 1, tutor_id="t"),  # unknown_session
            {**first, "payload": {**first["payload"], "grade": 4}},  # event_id_conflict
        ]
    )
    assert [o.status for o in outcomes] == ["duplicate", "rejected", "rejected", "rejected"]
    assert ledger.recorder.head("d-1") == head  # type: ignore[attr-defined]
    assert verify_district(ledger, "d-1")[0] == 1


def test_chain_continues_across_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.db"
    first = open_ledger(Settings(event_store=url))
    try:
        first.record_events([requested("d-1", "s-1"), requested("d-1", "s-2")])
    finally:
        first.close()
    again = open_ledger(Settings(event_store=url))
    try:
        again.record_events([raw("d-1", "s-1", "matched", 1, tutor_id="t-1")])
        count, positions, head = verify_district(again, "d-1")
        assert (count, positions) == (3, [1, 2, 3])
        assert again.recorder.head("d-1") == (3, head)  # type: ignore[attr-defined]
    finally:
        again.close()
