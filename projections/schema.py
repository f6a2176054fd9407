"""Versioned ClickHouse migrations (projections/migrations/NNNN_slug.sql), applied in order."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from importlib import resources

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.read_models import complete_generation, model_table

log = logging.getLogger(__name__)

# Applied versions. A MergeTree, because several processes (serve's workers, relay,
# projector) may migrate at once and a TinyLog table fails under concurrent inserts.
VERSIONS_TABLE = "schema_versions"
CREATE_VERSIONS_TABLE_SQL = (
    f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} "
    "(version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version"
)
# Where releases before it recorded versions: read, never written again.
LEGACY_VERSIONS_TABLE = "schema_migrations"
ATTEMPTS = 5  # a migration racing another process's DDL is retried, then the error is raised


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file shipped with the package, in order."""
    found = []
    for item in resources.files("tutorledger.projections").joinpath("migrations").iterdir():
        if item.name.endswith(".sql"):
            version = int(item.name.split("_", 1)[0])
            found.append((version, item.name, item.read_text()))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


def statements(sql: str) -> list[str]:
    """Split a migration into statements, dropping comment-only lines."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


ADD_COLUMN = re.compile(r"^ALTER TABLE (\w+) ADD COLUMN (\w+) ", re.IGNORECASE)


def apply(store: ProjectionStore, statement: str) -> None:
    """Run one statement; an ADD COLUMN whose column exists is skipped, so a migration cut
    short (process killed before it was recorded) runs again cleanly and processes racing on
    one migration all succeed. ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`."""
    added = ADD_COLUMN.match(statement)
    if added is not None and _has_column(store, added[1], added[2]):
        return
    try:
        store.execute(statement)
    except Exception:
        # Several processes migrating at once (`serve --workers N`): another one added it.
        if added is None or not _has_column(store, added[1], added[2]):
            raise


def _has_column(store: ProjectionStore, table: str, column: str) -> bool:
    return column in {str(r[0]) for r in store.execute(f"DESCRIBE TABLE {table}")}


def migrate(store: ProjectionStore) -> list[str]:
    """Apply migrations not yet recorded; returns the names applied. Every statement is
    idempotent, so when another process migrating at the same moment makes one fail (a
    table it is creating), running the whole set again is safe."""
    for attempt in range(1, ATTEMPTS):
        try:
            return _migrate_once(store)
        except Exception:
            log.warning("migration raced another process; retrying", extra={"attempt": attempt})
            time.sleep(0.2 * attempt)
    return _migrate_once(store)  # the last attempt's error is the caller's


def applied_versions(store: ProjectionStore) -> set[int]:
    """Versions recorded as applied, including those an older release recorded."""
    store.execute(CREATE_VERSIONS_TABLE_SQL)
    tables = [VERSIONS_TABLE]
    if store.execute(f"EXISTS TABLE {LEGACY_VERSIONS_TABLE}")[0][0]:
        tables.append(LEGACY_VERSIONS_TABLE)
    return {int(r[0]) for t in tables for r in store.execute(f"SELECT version FROM {t}")}


def _migrate_once(store: ProjectionStore) -> list[str]:
    done = applied_versions(store)
    applied = []
    for version, name, sql in migrations():
        if version in done:
            continue
        for statement in statements(sql):
            apply(store, statement)
        store.insert(VERSIONS_TABLE, ("version", "name", "applied_at"), [(version, name, _now())])
        log.info("migration applied", extra={"migration": name})
        applied.append(name)
    complete_generation(store)
    complete_columns(store)
    return applied


def complete_columns(store: ProjectionStore) -> None:
    """Give every generation's read-model table the columns its generation-1 table has: a
    migration alters `_g1`, and a store rebuilt past it reads (and copies) a later one."""
    tables = {str(r[0]) for r in store.execute("SHOW TABLES")}
    later: dict[str, list[str]] = {}
    for table in sorted(tables):
        found = model_table(table)
        if found is not None and found[1] > 1:
            later.setdefault(found[0], []).append(table)
    for model, others in later.items():
        first = f"{model}_g1"
        if first not in tables:
            continue
        wanted = [tuple(r[:4]) for r in store.execute(f"DESCRIBE TABLE {first}")]
        for table in others:
            have = {str(r[0]) for r in store.execute(f"DESCRIBE TABLE {table}")}
            previous = ""
            for name, kind, default_kind, default in wanted:
                if name not in have:
                    default_sql = f" {default_kind} {default}" if default_kind else ""
                    # In generation 1's place, so every generation lists its columns alike.
                    after = f" AFTER {previous}" if previous else ""
                    apply(
                        store, f"ALTER TABLE {table} ADD COLUMN {name} {kind}{default_sql}{after}"
                    )
                previous = name


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
