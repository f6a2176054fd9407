"""One write path for every projector: event rows → raw `ledger_events` + the read models.

Order and idempotence: the read models are written first, each skipping the positions it
already holds, and `ledger_events` (whose highest position is the embedded projector's
tracking position) last. A batch replayed after a crash anywhere in between therefore adds
nothing twice. Steps after the request need their session's request attributes: they come
from the same batch, a bounded cache of recent requests, or the read model itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

from tutorledger.domain.errors import Unavailable
from tutorledger.infra.clickhouse import Encoded, ProjectionStore, in_parts
from tutorledger.projections.insight_rows import COHORT_COLUMNS, GRADE_COLUMNS, insight_rows
from tutorledger.projections.read_models import (
    FACT_COLUMNS,
    SCHOOL_COLUMNS,
    Request,
    Tables,
    current_tables,
    fact_row,
    request_of,
    school_row,
    session_key,
    step_of,
    utc,
)
from tutorledger.projections.rows import COLUMNS
from tutorledger.projections.steps import COMPLETED, MATCHED, REQUESTED, step_in

Row = tuple[Any, ...]
SessionKey = tuple[str, str]
_WAIT = FACT_COLUMNS.index("wait_us")
_TUTOR = FACT_COLUMNS.index("tutor_id")

# A session's request attributes (on every one of its facts) and its wait to the match.
REQUESTS_SQL = f"""
SELECT session_id, any(school_id), any(subject), any(grade), any(student_key),
    any(requested_at), any(requested_us),
    if(countIf(step = {MATCHED}) > 0, maxIf(wait_us, step = {MATCHED}), -1),
    anyIf(provider, step = {REQUESTED}), anyIf(tutor_id, step = {MATCHED})
FROM {{facts}}
WHERE district_id = %(district_id)s AND {step_in((REQUESTED, MATCHED))}
    AND session_id IN %(sessions)s
GROUP BY session_id
HAVING countIf(step = {REQUESTED}) > 0
"""
PRESENT_SQL = """
SELECT DISTINCT position FROM {table}
WHERE position >= %(low)s AND position <= %(high)s AND position IN %(positions)s
"""


def _nothing() -> None:
    """The default `settle`: nothing is being inserted meanwhile."""


class MissingRequest(Unavailable):
    """A step arrived whose session request is not projected (yet): retry the batch later."""


class RequestCache:
    """Recent sessions' request attributes; oldest out first, so memory stays bounded.

    When full, the oldest tenth goes at once. Evicting one entry per new session
    (`del items[next(iter(items))]`) is quadratic in CPython: each deletion leaves a hole at
    the front of the dict's entry table that the next `iter` walks past again, until a
    resize compacts it; at 10 M events that eviction was a third of a projector's time."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._items: dict[SessionKey, Request] = {}

    def get(self, key: SessionKey) -> Request | None:
        return self._items.get(key)

    def put(self, key: SessionKey, request: Request) -> None:
        items = self._items
        if key not in items and len(items) >= self.size:
            keep = islice(items.items(), len(items) // 10 + 1, None)
            items = self._items = dict(keep)
        items[key] = request

    def __len__(self) -> int:
        return len(self._items)


def once_each(rows: Sequence[Row]) -> list[Row]:
    """The batch with each position once. A consumer that seeks back after a broker restart
    can hand one batch the same record twice, and the table check below cannot see a copy
    that is not inserted yet. (Copies from two writers racing are collapsed where the
    metrics read them: read_models.ReadTables.)"""
    seen: set[int] = set()
    out: list[Row] = []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            out.append(row)
    return out


def present_positions(store: ProjectionStore, table: str, positions: Sequence[int]) -> set[int]:
    """Which of `positions` `table` already holds (each part bounded by its range: partition
    pruning; sorted first, so the parts' ranges are narrow)."""
    present: set[int] = set()
    for part in in_parts(sorted(positions)):
        params = {"low": part[0], "high": part[-1], "positions": tuple(part)}
        present.update(int(r[0]) for r in store.execute(PRESENT_SQL.format(table=table), params))
    return present


class ReadModelWriter:
    """Writes batches of event rows (projections.rows.event_row) everywhere they belong."""

    def __init__(self, store: ProjectionStore, cache: RequestCache | None = None) -> None:
        self.store = store
        self.cache = cache if cache is not None else RequestCache()

    def write(
        self,
        rows: Sequence[Row],
        *,
        tables: Tables | None = None,
        raw_table: str = "ledger_events",
        dedupe: bool = True,
    ) -> None:
        """Insert `rows`; `dedupe=False` only for a writer that alone fills fresh tables."""
        self.apply(self.plan(rows, tables=tables, raw_table=raw_table, dedupe=dedupe))

    def plan(
        self,
        rows: Sequence[Row],
        *,
        tables: Tables | None = None,
        raw_table: str = "ledger_events",
        dedupe: bool = True,
        settle: Callable[[], None] = _nothing,
    ) -> list[Encoded]:
        """The blocks `write` inserts, in order, encoded: all the Python work, no insert. A bulk
        copier plans the next batch while the previous one is being inserted; `settle`
        waits for that insert, and is called before the store is read (a step whose request
        the cache lost, the dedupe check), so those reads see every earlier batch."""
        if not rows:
            return []
        rows = once_each(rows)
        target = tables or current_tables(self.store)
        facts, schools = self.derive(rows, target, settle)
        if dedupe:
            settle()
            seen = present_positions(self.store, target.facts, [f[9] for f in facts])
            facts = [f for f in facts if f[9] not in seen]
        cohorts, grades = insight_rows(rows)  # rare events; copies are harmless (argMax)
        blocks: list[tuple[str, Sequence[str], Sequence[Row]]] = [
            (target.facts, FACT_COLUMNS, facts),
            (target.schools, SCHOOL_COLUMNS, schools),
            (target.cohorts, COHORT_COLUMNS, cohorts),
            (target.grades, GRADE_COLUMNS, grades),
            (raw_table, COLUMNS, rows),  # last: its highest position is the tracking position
        ]
        return [self.store.encode(t, c, block) for t, c, block in blocks if block]

    def apply(self, blocks: Sequence[Encoded]) -> None:
        """Insert planned blocks, in their order."""
        for block in blocks:
            self.store.send(block)

    def derive(
        self, rows: Sequence[Row], tables: Tables, settle: Callable[[], None] = _nothing
    ) -> tuple[list[Row], list[Row]]:
        """(session_facts rows, school_updates rows) of a batch, in batch order. A step whose
        request (or, for a completion, whose match) is neither in the batch nor cached waits
        for one lookup of the read model."""
        facts: list[Row | None] = []
        schools: list[Row] = []
        waiting: list[tuple[int, Row, int]] = []
        batch: dict[SessionKey, Request] = {}  # whatever the cache has evicted meanwhile
        cached, cache, add = self.cache.get, self.cache.put, facts.append  # per event: bound once
        for row in rows:
            step = step_of(row)
            if step is None:
                school = school_row(row)
                if school is not None:
                    schools.append(school)
                continue
            key = session_key(row)
            if step == REQUESTED:
                request = batch[key] = request_of(row)
                cache(key, request)
            else:
                found = batch.get(key) or cached(key)
                if found is None or (step == COMPLETED and found.matched_us < 0):
                    waiting.append((len(facts), row, step))
                    add(None)
                    continue
                request = found
            fact = fact_row(row, step, request)
            if step == MATCHED:
                batch[key] = matched = request.with_match(fact[_WAIT], fact[_TUTOR])
                cache(key, matched)
            add(fact)
        if waiting:
            settle()
            self._resolve(facts, waiting, tables)
        return [f for f in facts if f is not None], schools

    def _resolve(
        self, facts: list[Row | None], waiting: list[tuple[int, Row, int]], tables: Tables
    ) -> None:
        """Fill the waiting steps' facts from one lookup of their sessions, in batch order."""
        fetched = self._fetch(waiting, tables)
        for index, row, step in waiting:
            key = session_key(row)
            if (looked := fetched.get(key) or self.cache.get(key)) is None:
                raise MissingRequest(f"no projected request for a step at position {row[0]}")
            facts[index] = fact = fact_row(row, step, looked)
            if step == MATCHED:  # a completion later in this batch needs it
                fetched[key] = matched = looked.with_match(fact[_WAIT], fact[_TUTOR])
                self.cache.put(key, matched)

    def _fetch(
        self, waiting: list[tuple[int, Row, int]], tables: Tables
    ) -> dict[SessionKey, Request]:
        """The requests of the waiting steps' sessions, from the read model (kept for this
        batch whatever the cache evicts meanwhile, and cached for the next)."""
        wanted: dict[str, set[str]] = {}
        for _, row, _ in waiting:
            district_id, session_id = session_key(row)
            wanted.setdefault(district_id, set()).add(session_id)
        found: dict[SessionKey, Request] = {}
        parts = [
            (district_id, part)
            for district_id, sessions in wanted.items()
            for part in in_parts(sorted(sessions))
        ]
        for district_id, part in parts:
            params = {"district_id": district_id, "sessions": tuple(part)}
            for (
                sid,
                school,
                subject,
                grade,
                student,
                at,
                us,
                matched,
                provider,
                tutor,
            ) in self.store.execute(REQUESTS_SQL.format(facts=tables.facts), params):
                request = Request(
                    school, subject, int(grade), int(student), utc(at), int(us), int(matched),
                    str(provider), str(tutor),
                )  # fmt: skip
                found[(district_id, sid)] = request
                self.cache.put((district_id, sid), request)
        return found
