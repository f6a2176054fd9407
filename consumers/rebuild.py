"""Rebuild the projections from the ledger into fresh tables, then swap them in together.

Readers never see a half-built model, nor one model new and another old: the read models
are filled as generation N+1 (`session_facts_g<N+1>`, … created `AS` generation N, so they
have exactly the live DDL) and published by one row in `read_model_generations`, which every
metric reads first. The raw `ledger_events` table (the reference reconcile reads) is rebuilt
as `ledger_events_rebuild` and renamed into place in the same guarded step. Generation N
stays until the next rebuild, for readers that resolved it just before the switch.

The swap runs inside a caller-supplied guard: an embedded API holds its projector and
read-your-writes syncs still during it (see `Runtime.swap_projections`). Events appended
while the rebuild ran are copied in just before the swap, and once more after it, so a
projector that kept writing to the old tables (Kafka mode) loses nothing either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from tutorledger.consumers.ports import PageReader
from tutorledger.consumers.projector import state_decoder
from tutorledger.domain.gc_pause import paused_gc
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.infra.eventstore.recorders import store_of
from tutorledger.projections.read_models import (
    GENERATIONS_TABLE,
    Tables,
    current_generation,
    model_table,
)
from tutorledger.projections.rows import event_row
from tutorledger.projections.writer import ReadModelWriter, RequestCache

log = logging.getLogger(__name__)

TABLE = "ledger_events"
STAGING = f"{TABLE}_rebuild"
RETIRED = f"{TABLE}_old"
BATCH = 5000

Progress = Callable[[int], None]
SwapGuard = Callable[[Callable[[], int]], int]


@dataclass(frozen=True)
class RebuildReport:
    """How many events went into the new table and the ledger position it covers."""

    events: int
    position: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _run_guarded(swap: Callable[[], int]) -> int:
    return swap()


def copy_ledger(
    ledger: Ledger,
    writer: ReadModelWriter,
    target: tuple[Tables, str, bool],
    after: int,
    *,
    batch_size: int = BATCH,
    on_progress: Progress | None = None,
) -> tuple[int, int]:
    """Project every ledger event after `after` into `target` (read models, raw table,
    dedupe): (events, last position). Reads pages of raw states, no notification objects.

    A pipeline of three threads: the next page is read and the previous page's blocks
    inserted while this one is decoded and planned (the store's reads and ClickHouse's
    inserts run outside the GIL, so the Python work of decoding and deriving rows is all the
    main thread does). Blocks are inserted in ledger order, one page at a time, and a plan
    that must read the store first waits for the insert before it, so every guarantee of
    `writer` still holds. `on_progress` receives position deltas, so a bar whose total is
    the ledger head ends full even where positions have gaps (PostgreSQL sequences skip on
    rolled-back appends).
    """
    reader: PageReader = store_of(ledger)
    tables, raw_table, dedupe = target
    decode = state_decoder(ledger)
    position, count = after, 0
    with paused_gc(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="rebuild") as pool:
        writing: Future[None] | None = None

        def settle() -> None:
            if writing is not None:
                writing.result()

        page = reader.event_states(position, batch_size)
        while page:
            last = int(page[-1][0])
            upcoming = pool.submit(reader.event_states, last, batch_size)
            rows = [event_row(p, decode(state)) for p, state in page]
            blocks = writer.plan(
                rows, tables=tables, raw_table=raw_table, dedupe=dedupe, settle=settle
            )
            settle()
            writing = pool.submit(writer.apply, blocks)
            if on_progress is not None:
                on_progress(last - position)
            position, count = last, count + len(rows)
            page = upcoming.result()
        settle()
    return count, position


def ledger_head(ledger: Ledger) -> int:
    """The highest ledger position now (0 for an empty ledger)."""
    return int(ledger.recorder.max_notification_id() or 0)


def _drop_generations(store: ProjectionStore, keep: set[int]) -> None:
    """Drop every read-model generation's tables except those in `keep`."""
    for (name,) in store.execute("SHOW TABLES"):
        found = model_table(str(name))
        if found is not None and found[1] not in keep:
            store.execute(f"DROP TABLE IF EXISTS {name}")


def _prepare(store: ProjectionStore) -> tuple[Tables, Tables]:
    """(live generation, empty next generation with the live DDL), leftovers cleared."""
    live = Tables(current_generation(store))
    fresh = Tables(live.generation + 1)
    _drop_generations(store, {live.generation, live.generation - 1})
    store.execute(f"DROP TABLE IF EXISTS {STAGING}")  # left over by an interrupted run
    store.execute(f"CREATE TABLE {STAGING} AS {TABLE}")
    for old, new in zip(live.all(), fresh.all(), strict=True):
        store.execute(f"DROP TABLE IF EXISTS {new}")
        store.execute(f"CREATE TABLE {new} AS {old}")
    return live, fresh


def publish(store: ProjectionStore, tables: Tables, position: int) -> None:
    """Make `tables` the generation every reader resolves (one row: atomic)."""
    now = datetime.now(UTC).replace(microsecond=0)
    store.insert(
        GENERATIONS_TABLE,
        ("generation", "position", "created_at"),
        [(tables.generation, position, now)],
    )


def rebuild(
    ledger: Ledger,
    store: ProjectionStore,
    *,
    batch_size: int = BATCH,
    on_progress: Progress | None = None,
    guard: SwapGuard = _run_guarded,
) -> RebuildReport:
    """Rebuild every projection from the whole ledger and swap them in together."""
    started = time.perf_counter()
    live, fresh = _prepare(store)
    writer = ReadModelWriter(store, RequestCache(size=1_000_000))
    # Alone on the fresh tables until they are published: no need to look for copies.
    count, position = copy_ledger(
        ledger, writer, (fresh, STAGING, False), 0, batch_size=batch_size, on_progress=on_progress
    )

    def swap() -> int:
        nonlocal count, position
        more, position = copy_ledger(
            ledger, writer, (fresh, STAGING, False), position, batch_size=batch_size
        )
        count += more
        store.execute(f"DROP TABLE IF EXISTS {RETIRED}")
        store.execute(f"RENAME TABLE {TABLE} TO {RETIRED}, {STAGING} TO {TABLE}")
        publish(store, fresh, position)
        return position

    def catch_up() -> int:
        # A Kafka projector may have written events past `position` into the old tables.
        nonlocal count, position
        more, position = copy_ledger(ledger, writer, (fresh, TABLE, True), position)
        count += more
        return position

    guard(swap)
    store.execute(f"DROP TABLE IF EXISTS {RETIRED}")
    position = guard(catch_up)
    _drop_generations(store, {fresh.generation, live.generation})
    report = RebuildReport(count, position, time.perf_counter() - started)
    log.info(
        "projections rebuilt",
        extra={"events": report.events, "position": report.position, "rate": round(report.rate)},
    )
    return report


def fill_missing_read_models(ledger: Ledger, store: ProjectionStore) -> RebuildReport | None:
    """Projections made before the read models existed hold raw rows only: rebuild once."""
    if store.execute(f"SELECT count() FROM {GENERATIONS_TABLE}")[0][0]:
        return None
    raw = int(store.execute(f"SELECT count() FROM {TABLE}")[0][0])
    facts = int(store.execute(f"SELECT count() FROM {Tables(1).facts}")[0][0])
    if raw == 0 or facts > 0:
        return None
    log.warning("projections predate the read models; rebuilding them from the ledger")
    return rebuild(ledger, store)
