"""Step codes: one table keyed by EventType, stored values pinned, SQL built from them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import cast

import pytest

import tutorledger.consumers as consumers_package
import tutorledger.projections as projections_package
from tutorledger.domain.envelope import EventType, per_kind
from tutorledger.domain.session import LIFECYCLE_RANK
from tutorledger.projections.read_models import step_of
from tutorledger.projections.rows import event_row
from tutorledger.projections.steps import SESSION_TYPES, STEP_CODES, step_in

# A literal step code in SQL text: `step = 2`, `step IN (0, 1)`, `step != 3`, …
LITERAL_STEP = re.compile(r"\bstep\s*(?:=|!=|<>|<=|>=|<|>|IN\s*\()\s*\d", re.IGNORECASE)


def test_every_kind_has_one_distinct_code() -> None:
    assert set(STEP_CODES) == set(EventType)
    assert len(set(STEP_CODES.values())) == len(EventType)
    assert set(SESSION_TYPES) == {kind.value for kind in EventType}
    assert set(LIFECYCLE_RANK) == set(EventType)


def test_codes_are_the_stored_ones_the_migration_names() -> None:
    """Rows already projected hold these codes: the table must keep matching migration
    0003's description of the `step` column (`step 0 requested, 1 matched, …`)."""
    sql = (
        resources.files("tutorledger.projections")
        .joinpath("migrations", "0003_read_models.sql")
        .read_text()
    )
    described = " ".join(line.strip().lstrip("-") for line in sql.splitlines())
    pairs = re.findall(r"(\d) (requested|matched|completed|cancelled|surveyed)", described)
    assert {f"session.{name}": int(code) for code, name in pairs} == {
        kind.value: code for kind, code in STEP_CODES.items()
    }


def test_a_table_missing_a_kind_fails_naming_it() -> None:
    partial = {k: v for k, v in STEP_CODES.items() if k is not EventType.CANCELLED}
    with pytest.raises(RuntimeError, match="session.cancelled"):
        per_kind(partial, "a step table")


def test_the_table_cannot_be_changed_after_the_check() -> None:
    with pytest.raises(TypeError):
        cast(dict[EventType, int], STEP_CODES)[EventType.CANCELLED] = 9


@pytest.mark.parametrize("kind", list(EventType))
def test_every_kind_of_event_row_gets_its_code(kind: EventType) -> None:
    event = {
        "event_id": "e",
        "type": kind.value,
        "district_id": "d",
        "session_id": "s",
        "occurred_at": datetime(2026, 1, 5, tzinfo=UTC).isoformat(),
        "payload": {},
    }
    assert step_of(event_row(1, event)) == STEP_CODES[kind]


def test_other_events_have_no_step() -> None:
    event = {
        "event_id": "e",
        "type": "school.updated",
        "district_id": "d",
        "occurred_at": datetime(2026, 1, 5, tzinfo=UTC).isoformat(),
        "payload": {"school_id": "s", "name": "S", "as_of": "2026-01-05", "enrollment": {}},
    }
    assert step_of(event_row(1, event)) is None


def test_step_in_takes_codes_only() -> None:
    assert step_in((0, 2)) == "step IN (0, 2)"
    for bad in ((), (5,), (-1, 0)):
        with pytest.raises(ValueError):
            step_in(bad)


def _sources() -> list[Path]:
    roots = (projections_package.__path__[0], consumers_package.__path__[0])
    return sorted(p for root in roots for p in Path(root).glob("*.py"))


def test_the_guard_sees_literal_codes() -> None:
    for text in ("countIf(step = 2)", "step IN (0, 1)", "WHERE step<>3"):
        assert LITERAL_STEP.search(text)
    assert not LITERAL_STEP.search("countIf(step = {COMPLETED})")


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.name)
def test_no_sql_names_a_step_by_a_literal_integer(path: Path) -> None:
    found = LITERAL_STEP.findall(path.read_text())
    assert not found, f"{path.name}: write the step through projections.steps: {found}"
