"""The migration rule, for any valid stream: the migrated ledger decrypts to exactly the old
ledger's events (ids, order, timestamps, every field), whatever the interleaving of
sessions, the students they share, the school updates between them and the page size."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from builders import envelope
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from migration_data import decrypted, run
from reference_metrics import fold

from tutorledger.bench.legacy_ledger import write_plaintext_ledger
from tutorledger.consumers import continuity
from tutorledger.infra.eventstore.legacy import open_store

PATHS = [(), ("matched",), ("matched", "completed"), ("matched", "completed", "surveyed"),
         ("cancelled",), ("matched", "cancelled")]  # fmt: skip
PAYLOADS: dict[str, dict[str, Any]] = {
    "matched": {"tutor_id": "tut-1"},
    "completed": {"outcome": "partial"},
    "surveyed": {"helped": False, "rating": 2, "comment": "words"},
    "cancelled": {"reason": "timeout"},
}
START = datetime(2026, 2, 2, 14, tzinfo=UTC)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, int | None]:
    queues: list[list[dict[str, Any]]] = []
    for k in range(draw(st.integers(1, 6))):
        district = draw(st.sampled_from(["pa", "pb"]))
        at = START + timedelta(minutes=draw(st.integers(0, 600)))
        student = draw(st.sampled_from(["s1", "s2", "s3"]))
        request = {"school_id": "sch-1", "student_id": student, "grade": draw(st.integers(0, 12)),
                   "subject": "algebra", "topic": f"t{k}"}  # fmt: skip
        queue = [envelope(district, f"ses-{k}", "requested", at.isoformat(), request)]
        for step in draw(st.sampled_from(PATHS)):
            at += timedelta(seconds=draw(st.integers(0, 5000)))
            queue.append(envelope(district, f"ses-{k}", step, at.isoformat(), PAYLOADS[step]))
        queues.append(queue)
    order = draw(st.permutations([k for k, q in enumerate(queues) for _ in q]))
    stream = [queues[k].pop(0) for k in order]
    school_at = draw(st.none() | st.integers(0, len(stream)))
    return stream, draw(st.integers(1, 7)), school_at


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_migration_gives_back_the_old_events_in_order(
    case: tuple[list[dict[str, Any]], int, int | None],
) -> None:
    stream, page, school_at = case
    with tempfile.TemporaryDirectory() as tmp:
        old, new = f"sqlite:///{tmp}/old.db", f"sqlite:///{tmp}/new.db"
        if school_at is not None:
            school = {"type": "school.updated", "district_id": "pa", "school_id": "sch-1",
                      "enrollment": {"3": 40}}  # fmt: skip
            stream = [*stream[:school_at], school, *stream[school_at:]]
        accepted = write_plaintext_ledger(old, stream)
        run(old, new, page=page)
        migrated = [e for e in decrypted(new) if e["type"].startswith("session.")]
        assert migrated == accepted
        for district in ("pa", "pb"):
            assert fold(migrated, district) == fold(accepted, district)
        a, b = open_store(old, read_only=True), open_store(new, read_only=True)
        try:
            assert continuity.check(a, b)[0]
        finally:
            a.close()
            b.close()
        assert Path(f"{tmp}/old.db").exists()
