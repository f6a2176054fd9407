"""Chain verification against tampering done directly in the store (SQLite and PostgreSQL),
and the README's stand-alone recomputation script run against the same ledgers."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from builders import at_minute as event

from tutorledger.domain.ledger import Ledger
from tutorledger.infra.eventstore.audit import verify_chain
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
A, B = "dist-a", "dist-b"


def lifecycle(district: str, session: str, student: str) -> list[dict[str, Any]]:
    return [
        event(district, session, "requested", 0, school_id="sch-1", student_id=student,
              grade=5, subject="algebra", topic="fracciones — ½ 🧮"),
        event(district, session, "matched", 1, tutor_id="tut-1"),
        event(district, session, "completed", 30, outcome="resolved"),
        event(district, session, "surveyed", 31, helped=True, rating=5, comment='a "b" \\ \n'),
    ]  # fmt: skip


class Store:
    """Raw access to one backend's tables, to tamper with behind the application's back."""

    def __init__(self, url: str, ledger: Ledger) -> None:
        self.url = url
        recorder: Any = ledger.recorder
        self.sqlite = url.startswith("sqlite")
        self.events = "stored_events" if self.sqlite else recorder.events_table_name
        self.pos = "rowid" if self.sqlite else "notification_id"

    def run(self, sql: str, *params: Any) -> list[Any]:
        sql = sql.format(events=self.events, pos=self.pos)
        if self.sqlite:
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as db:
                return db.execute(sql, params).fetchall()
        with psycopg.connect(self.url) as db:
            cur = db.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def state(self, position: int) -> bytes:
        return bytes(self.run("SELECT state FROM {events} WHERE {pos} = ?", position)[0][0])

    def set_state(self, position: int, state: bytes) -> None:
        self.run("UPDATE {events} SET state = ? WHERE {pos} = ?", state, position)


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    app = open_ledger(Settings(event_store=store_url))
    # Interleave two districts so each chain skips positions of the other.
    for i in range(4):
        app.record_events(lifecycle(A, f"s-{i}", f"stu-{i}") + lifecycle(B, f"s-{i}", f"stu-{i}"))
    yield app
    app.close()


def positions_of(ledger: Ledger, district: str) -> list[int]:
    rows = ledger.recorder.chained_events(district, 0, 1000)  # type: ignore[attr-defined]
    return [r[0] for r in rows]


def test_untampered_ledger_verifies_with_each_districts_head(ledger: Ledger) -> None:
    report = verify_chain(ledger.recorder, ledger.mapper)
    assert report.ok and report.checked == 32 and report.first_bad_position is None
    for district in (A, B):
        one = verify_chain(ledger.recorder, ledger.mapper, district)
        head = ledger.recorder.head(district)  # type: ignore[attr-defined]
        assert one.ok and one.checked == 16
        assert (one.head_position, one.head_hash) == head == report.heads[district]


Tamper = Callable[[Store, list[int], list[int]], int]


def change_payload(store: Store, a: list[int], _: list[int]) -> int:
    target = a[5]
    store.set_state(target, store.state(target).replace(b"tut-1", b"tut-9"))
    return target


def change_one_byte(store: Store, a: list[int], _: list[int]) -> int:
    target = a[4]
    state = bytearray(store.state(target))
    # The student id is sealed in the stored form: flip one character of the clear token.
    i = state.index(b'"student_token":"') + len(b'"student_token":"')
    state[i] = ord("A") if state[i] != ord("A") else ord("B")
    store.set_state(target, bytes(state))
    return target


def delete_event(store: Store, a: list[int], _: list[int]) -> int:
    store.run("DELETE FROM {events} WHERE {pos} = ?", a[6])
    store.run("DELETE FROM ledger_index WHERE position = ?", a[6])
    return a[7]  # the gap shows where the district's chain goes on without it


def delete_stored_event_only(store: Store, a: list[int], _: list[int]) -> int:
    store.run("DELETE FROM {events} WHERE {pos} = ?", a[6])
    return a[6]


def delete_index_row_only(store: Store, a: list[int], _: list[int]) -> int:
    store.run("DELETE FROM ledger_index WHERE position = ?", a[6])
    return a[6]


def swap_two_events(store: Store, a: list[int], _: list[int]) -> int:
    first, second = a[9], a[5]  # same district, same event type: only the order changes
    one, two = store.state(first), store.state(second)
    store.set_state(first, two)
    store.set_state(second, one)
    return min(first, second)


def swap_across_districts(store: Store, a: list[int], b: list[int]) -> int:
    one, two = store.state(a[3]), store.state(b[3])
    store.set_state(a[3], two)
    store.set_state(b[3], one)
    return min(a[3], b[3])


def rewrite_stored_hash(store: Store, a: list[int], _: list[int]) -> int:
    store.run("UPDATE ledger_index SET chain_hash = ? WHERE position = ?", "ab" * 32, a[2])
    return a[2]


def corrupt_json(store: Store, a: list[int], _: list[int]) -> int:
    store.set_state(a[8], store.state(a[8])[:-3])
    return a[8]


CASES: dict[str, tuple[Tamper, str]] = {
    "payload": (change_payload, "hash_mismatch"),
    "one-byte": (change_one_byte, "hash_mismatch"),
    "delete": (delete_event, "hash_mismatch"),
    "delete-event-keep-index": (delete_stored_event_only, "event_missing"),
    "delete-index-keep-event": (delete_index_row_only, "index_missing"),
    "reorder": (swap_two_events, "hash_mismatch"),
    "reorder-districts": (swap_across_districts, "district_mismatch"),
    "stored-hash": (rewrite_stored_hash, "hash_mismatch"),
    "corrupt": (corrupt_json, "undecodable"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_found_at_the_first_bad_position(
    ledger: Ledger, store_url: str, case: str
) -> None:
    tamper, problem = CASES[case]
    a, b = positions_of(ledger, A), positions_of(ledger, B)
    expected = tamper(Store(store_url, ledger), a, b)

    for scope in (None, A):
        report = verify_chain(ledger.recorder, ledger.mapper, scope, page=3)
        assert not report.ok, scope
        assert report.first_bad_position == expected, scope
        assert report.problem == problem, scope
        assert report.head_position is None or report.head_position < expected
    if case != "reorder-districts":  # the other district's chain is untouched
        assert verify_chain(ledger.recorder, ledger.mapper, B).ok


# -- the README's script ----------------------------------------------------------------------


def readme_script() -> str:
    """The auditor's script, extracted verbatim from the README's "For auditors" section."""
    text = README.read_text()
    section = text.split("## For auditors", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    (script,) = [b for b in blocks if "hash chains" in b.splitlines()[0]]
    lines = [line for line in script.splitlines() if line.strip()]
    assert len(lines) <= 22, "the README promises a script of about 20 lines"
    return script


def run_script(tmp_path: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "recompute.py"
    path.write_text(readme_script())
    return subprocess.run(
        [sys.executable, str(path), db, *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[tuple[str, Ledger]]:
    url = f"sqlite:///{tmp_path}/ledger.db"
    app = open_ledger(Settings(event_store=url))
    for i in range(3):
        app.record_events(lifecycle(A, f"s-{i}", f"stu-{i}") + lifecycle(B, f"s-{i}", f"stu-{i}"))
    app.put_school(A, "sch-1", "Escuela Ñandú", {"5": 40, "0": 12}, date(2026, 1, 5))
    yield url, app
    app.close()


def test_readme_script_recomputes_the_heads_the_system_reports(
    sqlite_ledger: tuple[str, Ledger], tmp_path: Path
) -> None:
    url, app = sqlite_ledger
    db = url.removeprefix("sqlite:///")
    report = verify_chain(app.recorder, app.mapper)
    done = run_script(tmp_path, db)
    assert done.returncode == 0, done.stderr
    printed = [line.split() for line in done.stdout.splitlines()]
    assert {d: (int(p), h) for d, p, h in printed} == report.heads
    # As of an earlier position: the head a metrics answer would publish there.
    position = positions_of(app, A)[5] + 1
    done = run_script(tmp_path, db, str(position))
    heads = {line.split()[0]: line.split()[2] for line in done.stdout.splitlines()}
    for district in (A, B):
        assert heads[district] == app.recorder.head(district, position)[1]  # type: ignore[attr-defined]


def test_readme_script_finds_tampering(sqlite_ledger: tuple[str, Ledger], tmp_path: Path) -> None:
    url, app = sqlite_ledger
    a = positions_of(app, A)
    change_payload(Store(url, app), a, [])
    done = run_script(tmp_path, url.removeprefix("sqlite:///"))
    assert done.returncode != 0
    assert f"chain broken at position {a[5]}" in done.stderr
    assert verify_chain(app.recorder, app.mapper).first_bad_position == a[5]


def test_readme_postgres_query_feeds_the_same_script(pg_dsn: str, tmp_path: Path) -> None:
    """The README's PostgreSQL query, its rows copied into the script's SQLite shape."""
    app = open_ledger(Settings(event_store=pg_dsn))
    try:
        for i in range(3):
            app.record_events(lifecycle(A, f"s-{i}", f"stu-{i}") + lifecycle(B, f"s-{i}", "x"))
        report = verify_chain(app.recorder, app.mapper)
    finally:
        app.close()
    text = README.read_text().split("## For auditors", 1)[1]
    found = re.search(r"runs over the rows of\s+`(.*?)`", text, re.S)
    assert found is not None
    query = " ".join(found[1].split())
    with psycopg.connect(pg_dsn) as db:
        rows = db.execute(query.encode()).fetchall()
    copy = tmp_path / "copy.db"
    with sqlite3.connect(copy) as db:
        db.execute("CREATE TABLE stored_events (state BLOB)")
        db.execute("CREATE TABLE ledger_index (position INTEGER PRIMARY KEY, chain_hash TEXT)")
        events = [(position, state) for position, state, _ in rows]
        db.executemany("INSERT INTO stored_events (rowid, state) VALUES (?, ?)", events)
        db.executemany("INSERT INTO ledger_index VALUES (?, ?)", [(p, h) for p, _, h in rows])
    done = run_script(tmp_path, str(copy))
    assert done.returncode == 0, done.stderr
    printed = [line.split() for line in done.stdout.splitlines()]
    assert {d: (int(p), h) for d, p, h in printed} == report.heads
