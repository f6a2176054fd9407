"""Backup and restore of the event store: one consistent copy of its database, with a manifest.

Everything the system of record holds lives in the store's one database: the events and the
ledger index, the student key table (`student_keys`, `student_sessions`,
`privacy_secrets`), the disclosure log, dashboard sign-outs and the relay's tracking rows.
A backup is that database copied at one instant (SQLite: the online backup API, page by
page while writers go on; PostgreSQL: `pg_dump` inside an exported snapshot), and a
`manifest.json` naming each file's size and SHA-256 and the ledger head it holds (events,
last position, every district's chain head). The manifest is written last: a folder
without one is not a backup. Projections are not backed up: they are rebuilt from the
ledger. The erasure journal is deliberately not in the backup (see erasure_journal.py).

A restore checks every digest before it touches anything, refuses a target that holds
anything, and checks the restored heads against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tutorledger.domain.errors import TutorLedgerError
from tutorledger.infra.eventstore.store import store_env
from tutorledger.infra.eventstore.write_turns import SUFFIX as WRITERS_SUFFIX

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "ledger.sqlite3"
PG_FILE = "ledger.pgdump"
PAGES = 2048  # SQLite pages per backup step: writers get the database between steps
Progress = Callable[[int, int], None]  # (done, total)
HEADS_SQL = (
    "SELECT l.district_id, l.position, l.chain_hash FROM ledger_index l JOIN "
    "(SELECT district_id, MAX(position) AS p FROM ledger_index GROUP BY district_id) m "
    "ON l.district_id = m.district_id AND l.position = m.p ORDER BY l.district_id"
)
COUNT_SQL = "SELECT COUNT(*), COALESCE(MAX(position), 0) FROM ledger_index"


class BackupUnusable(TutorLedgerError):
    """The backup folder cannot be used (missing, incomplete, altered, other store kind)."""

    code = "backup_unusable"


class TargetNotEmpty(TutorLedgerError):
    """A restore was pointed at a store that already holds data; nothing was changed."""

    code = "target_not_empty"


@dataclass(frozen=True)
class Manifest:
    """What a backup folder holds; `files` maps a file name to its size and SHA-256."""

    store: str
    created_at: str
    events: int
    head_position: int
    districts: dict[str, dict[str, Any]]
    files: dict[str, dict[str, Any]]
    format: int = FORMAT

    def write(self, folder: Path) -> None:
        text = json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n"
        (folder / MANIFEST).write_text(text)

    def ledger(self) -> dict[str, Any]:
        """The part a restored store must equal."""
        return {"events": self.events, "head_position": self.head_position,
                "districts": self.districts}  # fmt: skip


def read_manifest(folder: Path) -> Manifest:
    """The folder's manifest, with every file's size and digest checked."""
    try:
        raw = json.loads((folder / MANIFEST).read_text())
        manifest = Manifest(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise BackupUnusable(f"{folder}: no readable {MANIFEST} (not a finished backup)") from exc
    if manifest.format != FORMAT:
        raise BackupUnusable(f"{folder}: backup format {manifest.format}, expected {FORMAT}")
    for name, want in manifest.files.items():
        path = folder / name
        if not path.is_file() or file_entry(path) != want:
            raise BackupUnusable(f"{folder}: {name} is missing or differs from the manifest")
    return manifest


def file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def ledger_summary(cursor: Any) -> tuple[int, int, dict[str, dict[str, Any]]]:
    """(events, head position, {district: head}) read through a DB-API cursor."""
    cursor.execute(COUNT_SQL)
    events, head = cursor.fetchone()
    cursor.execute(HEADS_SQL)
    districts = {r[0]: {"head_position": int(r[1]), "head_hash": r[2]} for r in cursor.fetchall()}
    return int(events), int(head), districts


def prepare_folder(folder: Path) -> None:
    """A new or empty folder: an older backup is never overwritten."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupUnusable(f"{folder} exists and is not empty; back up into a new folder")
    folder.mkdir(parents=True, exist_ok=True)


def sqlite_path(url: str) -> Path:
    name = store_env(url)["SQLITE_DBNAME"]
    if name in (":memory:", "/:memory:"):
        raise BackupUnusable("an in-memory SQLite store cannot be backed up or restored")
    return Path(name)


def backup(url: str, folder: Path, on_progress: Progress | None = None) -> Manifest:
    """Copy the store at `url` into the new folder `folder`; the manifest is written last."""
    kind, name = ("sqlite", SQLITE_FILE) if url.startswith("sqlite") else ("postgresql", PG_FILE)
    prepare_folder(folder)
    try:
        if kind == "sqlite":
            summary = _backup_sqlite(sqlite_path(url), folder / name, on_progress)
        else:
            summary = _backup_postgres(url, folder / name, on_progress)
    except BaseException:
        (folder / name).unlink(missing_ok=True)  # a half-written copy is no backup
        raise
    events, head, districts = summary
    manifest = Manifest(
        store=kind,
        created_at=datetime.now(UTC).isoformat(),
        events=events,
        head_position=head,
        districts=districts,
        files={name: file_entry(folder / name)},
    )
    manifest.write(folder)
    return manifest


def _backup_sqlite(
    source: Path, target: Path, on_progress: Progress | None
) -> tuple[int, int, dict[str, dict[str, Any]]]:
    """SQLite's online backup, a step of PAGES at a time (progress between steps), every
    step inside one read transaction held on the source: in WAL mode writers go on
    meanwhile, and the copy is that one snapshot. The copy is one file."""
    if not source.is_file():
        raise BackupUnusable(f"no SQLite store at {source}")
    src = sqlite3.connect(source, timeout=30, isolation_level=None)
    dst = sqlite3.connect(target)
    try:
        src.execute("BEGIN")
        src.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # the snapshot, now
        _copy_pages(src, dst, on_progress)
        src.execute("COMMIT")
        dst.execute("PRAGMA journal_mode = DELETE")
        return ledger_summary(dst.cursor())
    finally:
        dst.close()
        src.close()


def _copy_pages(
    src: sqlite3.Connection, dst: sqlite3.Connection, on_progress: Progress | None
) -> None:
    """SQLite's backup API, PAGES at a time, reporting (pages copied, pages in all)."""

    def step(_status: int, remaining: int, total: int) -> None:
        if on_progress is not None:
            on_progress(total - remaining, total)

    src.backup(dst, pages=PAGES, progress=step)


def pg_tool(name: str) -> str:
    """pg_dump / pg_restore: Debian's wrapper on PATH, else the PostgreSQL 15 binaries."""
    found = shutil.which(name) or shutil.which(name, path="/usr/lib/postgresql/15/bin")
    if found is None:
        raise BackupUnusable(f"{name} not found: install the PostgreSQL client tools")
    return found


def _run_logged(
    command: list[str], marker: tuple[str, ...], total: int, on_progress: Progress | None
) -> None:
    """Run a pg tool in verbose mode, counting its lines that start a step as progress."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    done, tail = 0, []
    for line in process.stderr:
        if any(m in line for m in marker):
            done += 1
            if on_progress is not None:
                on_progress(min(done, total), total)
        elif "error" in line.lower():
            tail.append(line.strip())
    if process.wait() != 0:
        detail = "; ".join(tail[-3:]) or f"exit {process.returncode}"
        raise BackupUnusable(f"{Path(command[0]).name} failed: {detail}")


def _table_count(cursor: Any) -> int:
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema NOT IN "
        "('pg_catalog', 'information_schema')"
    )
    return int(cursor.fetchone()[0])


def _backup_postgres(
    url: str, target: Path, on_progress: Progress | None
) -> tuple[int, int, dict[str, dict[str, Any]]]:
    """pg_dump in the snapshot the manifest's heads were read in: they describe the dump."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute("SELECT pg_export_snapshot()")
        row = cur.fetchone()
        assert row is not None
        snapshot = row[0]
        summary = ledger_summary(cur)
        tables = _table_count(cur)
        command = [pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                   "--verbose", f"--snapshot={snapshot}", f"--file={target}",
                   f"--dbname={url}"]  # fmt: skip
        _run_logged(command, ("dumping contents of table",), tables, on_progress)
    return summary


def restore(url: str, folder: Path, on_progress: Progress | None = None) -> Manifest:
    """Check the backup, refuse a non-empty target, then copy the backup into it. SQLite:
    into a file beside the target, renamed into place by `finish_sqlite` once erasures are
    applied again; PostgreSQL: `pg_restore` in one transaction (all or nothing)."""
    manifest = read_manifest(folder)
    kind = "sqlite" if url.startswith("sqlite") else "postgresql"
    if manifest.store != kind:
        raise BackupUnusable(f"{folder} is a {manifest.store} backup; the target is {kind}")
    if kind == "sqlite":
        target = sqlite_path(url)
        refuse_nonempty_sqlite(target)
        staged = staging_path(target)
        _copy_sqlite(folder / SQLITE_FILE, staged, on_progress)
        summary = _summary_sqlite(staged)
    else:
        summary = _restore_postgres(url, folder / PG_FILE, on_progress)
    if {"events": summary[0], "head_position": summary[1], "districts": summary[2]} != (
        manifest.ledger()
    ):
        raise BackupUnusable(f"{folder}: the restored ledger differs from the manifest")
    return manifest


def staging_path(target: Path) -> Path:
    return target.with_name(target.name + ".restoring")


def refuse_nonempty_sqlite(target: Path) -> None:
    """Refused: a file with any row in any table (a new store's empty tables are fine)."""
    for extra in (Path(f"{target}-wal"),):
        if extra.exists() and extra.stat().st_size > 0:
            raise TargetNotEmpty(f"{target} has a write-ahead log: a store in use; not restored")
    if not target.exists() or target.stat().st_size == 0:
        return
    # immutable: no -wal/-shm made beside a file we may only look at
    conn = sqlite3.connect(f"file:{target}?mode=ro&immutable=1", uri=True)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for name in names:
            if conn.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone():
                raise TargetNotEmpty(
                    f"{target} already holds data (table {name}); restore into a new file"
                )
    except sqlite3.DatabaseError as exc:
        raise TargetNotEmpty(f"{target} exists and is not an empty store: {exc}") from exc
    finally:
        conn.close()


def _copy_sqlite(source: Path, staged: Path, on_progress: Progress | None) -> None:
    staged.unlink(missing_ok=True)
    _remove_companions(staged)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(staged)
    try:
        _copy_pages(src, dst, on_progress)
    finally:
        dst.close()
        src.close()


def _summary_sqlite(path: Path) -> tuple[int, int, dict[str, dict[str, Any]]]:
    conn = sqlite3.connect(path)
    try:
        return ledger_summary(conn.cursor())
    finally:
        conn.close()


def finish_sqlite(url: str) -> None:
    """Put the staged store in place: one file, its log folded in, renamed over the target
    (which `restore` found absent or empty and which is checked again now)."""
    target = sqlite_path(url)
    staged = staging_path(target)
    conn = sqlite3.connect(staged)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()
    refuse_nonempty_sqlite(target)
    Path(f"{target}-shm").unlink(missing_ok=True)
    os.replace(staged, target)
    _remove_companions(staged)


def discard_staged(url: str) -> None:
    """A restore that failed before `finish_sqlite` leaves nothing behind."""
    if url.startswith("sqlite"):
        staged = staging_path(sqlite_path(url))
        staged.unlink(missing_ok=True)
        _remove_companions(staged)


def _remove_companions(database: Path) -> None:
    """The log, shared-memory and writer-turn files SQLite and the recorder keep beside it."""
    for suffix in ("-wal", "-shm", WRITERS_SUFFIX):
        Path(f"{database}{suffix}").unlink(missing_ok=True)


def _restore_postgres(
    url: str, dump: Path, on_progress: Progress | None
) -> tuple[int, int, dict[str, dict[str, Any]]]:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        if _table_count(cur) > 0:
            raise TargetNotEmpty(
                "the target database already has tables; restore into a new one (createdb)"
            )
    listing = subprocess.run(
        [pg_tool("pg_restore"), "--list", str(dump)], capture_output=True, text=True, check=False
    )
    # Every entry of the dump's table of contents: the tables' data, then their indexes and
    # constraints (on a large ledger, building the indexes takes as long as loading the rows).
    steps = sum(bool(line) and not line.startswith(";") for line in listing.stdout.splitlines())
    command = [pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
               "--single-transaction", "--verbose", f"--dbname={url}", str(dump)]  # fmt: skip
    markers = ("processing data for table", "creating ")
    _run_logged(command, markers, max(steps, 1), on_progress)
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        # Statistics now, rather than from autovacuum during the erasures: an ANALYZE's
        # snapshot would keep the destroyed keys' old row versions alive through the scrub's
        # VACUUM FULL (seen: the key still in the rewritten `student_keys` file).
        cur.execute("VACUUM ANALYZE")
        return ledger_summary(cur)
