"""The write path's fast encoders write exactly what the reference encoders write, and the
events it builds without the aggregate are the aggregate's own."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from eventsourcing.application import project_aggregate
from eventsourcing.persistence import Mapper
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorledger.domain.envelope import canonical_json as reference_json
from tutorledger.domain.session import TutoringSession, session_event, session_key
from tutorledger.infra.eventstore import codec
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

# Plain JSON as envelopes hold it: any text (controls, astral planes, U+2028), 64-bit ints.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), TEXT)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=5)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_canonical_json_is_the_reference_byte_for_byte(value: Any) -> None:
    assert codec.canonical_json(value) == reference_json(value)


def test_canonical_json_falls_back_to_the_reference_beyond_64_bits() -> None:
    assert codec.canonical_json({"n": 2**70}) == reference_json({"n": 2**70})


def envelope(step: str, **payload: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "district_id": "d-1",
        "session_id": "s-1",
        "occurred_at": "2026-03-02T15:00:00.250000Z",
        "type": f"session.{step}",
        "payload": payload,
    }


@settings(max_examples=50, deadline=None)
@given(TEXT)
def test_stored_events_are_the_library_mappers_byte_for_byte(text: str) -> None:
    """The aggregate's own events (request, then a step), through the library's mapper and
    through ours: the same topic, version and state bytes; and ours read back equal."""
    ledger = open_ledger(Settings(event_store="sqlite:///:memory:"))
    library = Mapper[uuid.UUID](ledger.mapper.transcoder)  # the library's own mapper
    session = TutoringSession.request(
        envelope("requested", school_id=text, grade=3, subject="math")
    )
    session._step(envelope("matched", tutor_id=text))
    for event in session.collect_events():
        ours, theirs = ledger.mapper.to_stored_event(event), library.to_stored_event(event)
        assert ours == theirs
        assert vars(ledger.mapper.to_domain_event(ours)) == vars(library.to_domain_event(ours))
    ledger.close()


def test_events_built_without_the_aggregate_replay_as_the_aggregate(tmp_path: Path) -> None:
    """`session_event` gives the aggregate's event classes and fields; stored and read back,
    they replay into the session the aggregate would have been."""
    first = envelope(
        "requested", school_id="sch-1", grade=3, subject="math", student_token="t" * 24
    )
    then = envelope("matched", tutor_id="tut-1")
    key = session_key("d-1", "s-1")
    via_aggregate = TutoringSession.request(first)
    via_aggregate._step(then)
    expected = via_aggregate.collect_events()
    built = [session_event(key, 1, first), session_event(key, 2, then)]
    for made, reference in zip(built, expected, strict=True):
        assert type(made) is type(reference)
        assert {k: v for k, v in vars(made).items() if k != "timestamp"} == {
            k: v for k, v in vars(reference).items() if k != "timestamp"
        }
    ledger = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/l.db"))
    mapper = ledger.mapper
    replayed = project_aggregate(
        None, [mapper.to_domain_event(mapper.to_stored_event(e)) for e in built]
    )
    assert isinstance(replayed, TutoringSession)
    assert replayed.stored_events() == [first, then]
    assert (replayed.version, replayed.status, replayed.student_token) == (2, "matched", "t" * 24)
    ledger.close()
