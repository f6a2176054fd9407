"""The read models' generations and the event row → read-model row mapping.

`session_facts_g<N>` holds one row per session lifecycle event with its session's request
attributes; `school_updates_g<N>` one row per school.updated event. A rebuild fills
generation N+1 and publishes it with one row in `read_model_generations`, so every reader
resolves all its tables from one generation number.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.rows import COLUMNS
from tutorledger.projections.steps import COMPLETED, MATCHED, STEP_CODES, SURVEYED

SCHOOL_UPDATED = "school.updated"

FACT_COLUMNS: tuple[str, ...] = (
    "district_id",
    "step",
    "school_id",
    "subject",
    "grade",
    "student_key",
    "session_id",
    "requested_at",
    "requested_us",
    "position",
    "wait_us",
    "helped",
    "rating",
    "matched_us",
    "provider",
    "tutor_id",
)
SCHOOL_COLUMNS: tuple[str, ...] = (
    "district_id",
    "school_id",
    "position",
    "school_name",
    "as_of",
    "enrollment_grades",
    "enrollment_counts",
)
FACTS, SCHOOLS = "session_facts", "school_updates"
COHORTS, GRADES = "cohort_updates", "grade_facts"
MODELS = (FACTS, SCHOOLS, COHORTS, GRADES)
GENERATIONS_TABLE = "read_model_generations"
# Where each ledger_events column sits in an event row (projections.rows.COLUMNS).
_AT = {name: i for i, name in enumerate(COLUMNS)}
# The same, as constants: these run once or twice per event in a rebuild.
_POSITION, _TYPE, _DISTRICT, _SESSION = (
    _AT[c] for c in ("position", "type", "district_id", "session_id")
)
_SCHOOL, _OCCURRED, _US, _STUDENT = (
    _AT[c] for c in ("school_id", "occurred_at", "occurred_us", "student_id")
)
_GRADE, _SUBJECT, _HELPED, _RATING = (_AT[c] for c in ("grade", "subject", "helped", "rating"))
_PROVIDER, _TUTOR = _AT["provider"], _AT["tutor_id"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Tables:
    """Every read model's table in one generation."""

    generation: int

    @property
    def facts(self) -> str:
        return f"{FACTS}_g{self.generation}"

    @property
    def schools(self) -> str:
        return f"{SCHOOLS}_g{self.generation}"

    @property
    def cohorts(self) -> str:
        return f"{COHORTS}_g{self.generation}"

    @property
    def grades(self) -> str:
        return f"{GRADES}_g{self.generation}"

    def all(self) -> tuple[str, ...]:
        return tuple(f"{model}_g{self.generation}" for model in MODELS)


@dataclass(frozen=True)
class ReadTables(Tables):
    """The tables as the metrics read them. Session facts are read with FINAL: two writers
    handed the same records at the same moment (a rebalanced projector and the member that
    took its partitions over; `repair` against a late redelivery) can both insert a
    position, since each checks what is present and inserts the rest in two steps. FINAL
    collapses such copies (the sort key ends in the unique position) when the query reads
    them, instead of when ClickHouse merges the parts, so no figure counts a position twice.
    The other read models are read with argMax over the position: a copy changes nothing."""

    @property
    def facts(self) -> str:
        return f"{FACTS}_g{self.generation} FINAL"


def current_generation(store: ProjectionStore) -> int:
    """The published generation (1 until a rebuild publishes another)."""
    rows = store.execute(f"SELECT max(generation), count() FROM {GENERATIONS_TABLE}")
    return int(rows[0][0] or 1) if rows and int(rows[0][1]) else 1


def current_tables(store: ProjectionStore) -> Tables:
    return Tables(current_generation(store))


def model_table(name: str) -> tuple[str, int] | None:
    """(model, generation) of a read-model table name `<model>_g<N>`, else None."""
    model, _, suffix = name.rpartition("_g")
    return (model, int(suffix)) if model in MODELS and suffix.isdigit() else None


def complete_generation(store: ProjectionStore) -> None:
    """Give the published generation every model: a model added by a later migration is
    created as generation 1 only, which a store already rebuilt past it would not read."""
    live = current_tables(store)
    names = {str(r[0]) for r in store.execute("SHOW TABLES")}
    for model, table in zip(MODELS, live.all(), strict=True):
        if table not in names and f"{model}_g1" in names:
            store.execute(f"CREATE TABLE IF NOT EXISTS {table} AS {model}_g1")


def student_key(student_id: str) -> int:
    """A stable 64-bit key for a student id (BLAKE2b): the read models never hold the id."""
    return int.from_bytes(hashlib.blake2b(student_id.encode(), digest_size=8).digest(), "big")


class Request(NamedTuple):
    """A session's request attributes, copied onto each of its later steps. A tuple of plain
    values, so the garbage collector stops tracking it: the writers cache hundreds of
    thousands, and scanning tracked ones on every collection cost rebuilds a third of their
    time."""

    school_id: str
    subject: str
    grade: int
    student_key: int
    requested_at: datetime  # whole seconds, UTC
    requested_us: int
    matched_us: int = -1  # request → match, once the matched step is seen (-1: not yet)
    provider: str = ""  # the request's provider (its provenance): the session's, on every step
    tutor_id: str = ""  # the matched tutor, once the matched step is seen

    def with_match(self, wait_us: int, tutor_id: str) -> Request:
        """This request once its session is matched `wait_us` after it (built directly,
        about half the cost of `_replace`: it runs once per matched step in a rebuild)."""
        return Request(*self[:6], wait_us, self.provider, tutor_id)

    def wait_us(self, at: datetime, us: int) -> int:
        seconds = int((at - self.requested_at).total_seconds())
        return seconds * 1_000_000 + us - self.requested_us


def request_of(row: tuple[Any, ...]) -> Request:
    """The request attributes of a session.requested event row."""
    return Request(
        row[_SCHOOL],
        row[_SUBJECT],
        int(row[_GRADE]),
        student_key(row[_STUDENT]),
        utc(row[_OCCURRED]),
        int(row[_US]),
        provider=row[_PROVIDER],
    )


def utc(value: Any) -> datetime:
    """A DateTime as ClickHouse or Python hands it over, as an aware UTC datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is UTC:  # an event row's own (parsed from a `Z` instant)
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(int(value), UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def session_key(row: tuple[Any, ...]) -> tuple[str, str]:
    return row[_DISTRICT], row[_SESSION]


def step_of(row: tuple[Any, ...]) -> int | None:
    return STEP_CODES.get(row[_TYPE])


def fact_row(row: tuple[Any, ...], step: int, request: Request) -> tuple[Any, ...]:
    """The session_facts row of one session event row, given its session's request (and,
    for a completion, the wait to its match: the session's length is then one row's
    `wait_us - matched_us`)."""
    wait = 0  # matched: the wait; completed: request → completion (so length = the difference)
    if step == MATCHED or step == COMPLETED:
        wait = request.wait_us(utc(row[_OCCURRED]), int(row[_US]))
    surveyed = step == SURVEYED
    return (
        row[_DISTRICT],
        step,
        request.school_id,
        request.subject,
        request.grade,
        request.student_key,
        row[_SESSION],
        request.requested_at,
        request.requested_us,
        row[_POSITION],
        wait,
        row[_HELPED] if surveyed else -1,
        row[_RATING] if surveyed else -1,
        request.matched_us if step == COMPLETED else -1,
        request.provider,
        row[_TUTOR] if step == MATCHED else request.tutor_id if step == COMPLETED else "",
    )


def school_row(row: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The school_updates row of a school.updated event row (None for other events)."""
    if row[_AT["type"]] != SCHOOL_UPDATED:
        return None
    as_of = row[_AT["as_of"]]
    return (
        row[_AT["district_id"]],
        row[_AT["school_id"]],
        row[_AT["position"]],
        row[_AT["school_name"]],
        as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of)),
        list(row[_AT["enrollment_grades"]]),
        list(row[_AT["enrollment_counts"]]),
    )
