"""Lost write races: the jittered backoff's bounds, and a ledger that loses a real race on a
shared SQLite store (another Ledger issues the batch's new student key between its read and
its append) reads again in the exclusive turn, where no rival can commit, and stores its
batch once."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError
from hypothesis import given
from hypothesis import strategies as st

from tutorledger.domain.errors import Unavailable
from tutorledger.domain.ledger import Ledger
from tutorledger.domain.write_retry import BASE_DELAY, MAX_ATTEMPTS, MAX_DELAY, backoff, retried
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.eventstore.write_turns import SUFFIX, FileTurns
from tutorledger.infra.settings import Settings

DISTRICT = "d-race"


@given(attempt=st.integers(0, 10_000), draw=st.floats(0, 1, exclude_max=True))
def test_backoff_is_jittered_below_a_growing_capped_bound(attempt: int, draw: float) -> None:
    wait = backoff(attempt, lambda: draw)
    bound = min(MAX_DELAY, BASE_DELAY * 2 ** min(attempt, 16))
    assert 0 <= wait < bound or wait == bound == 0
    assert wait == pytest.approx(draw * bound)


def test_total_wait_stays_under_a_second() -> None:
    assert sum(backoff(a, lambda: 1.0) for a in range(MAX_ATTEMPTS - 1)) < 1.0


@given(losses=st.integers(0, MAX_ATTEMPTS - 1))
def test_a_write_is_retried_after_each_lost_race_until_it_wins(losses: int) -> None:
    pauses: list[float] = []
    calls = iter(range(MAX_ATTEMPTS))

    def write() -> str:
        if next(calls) < losses:
            raise IntegrityError("another writer won")
        return "stored"

    assert retried(write, "lost", pause=pauses.append, draw=lambda: 0.5) == "stored"
    assert pauses == [backoff(a, lambda: 0.5) for a in range(losses)]


def test_a_write_that_keeps_losing_is_unavailable_after_the_last_attempt() -> None:
    pauses: list[float] = []

    def write() -> None:
        raise IntegrityError("another writer won")

    with pytest.raises(Unavailable, match="kept losing") as raised:
        retried(write, "kept losing", pause=pauses.append)
    assert raised.value.code == "unavailable" and len(pauses) == MAX_ATTEMPTS - 1


def test_other_errors_are_not_retried() -> None:
    pauses: list[float] = []

    def write() -> None:
        raise ValueError("not a race")

    with pytest.raises(ValueError, match="not a race"):
        retried(write, "lost", pause=pauses.append)
    assert pauses == []


# --- real races on one SQLite store ---------------------------------------------------------


def request(session: str, student: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "session.requested",
        "schema_version": 1,
        "district_id": DISTRICT,
        "session_id": session,
        "occurred_at": "2026-03-02T15:00:00Z",
        "payload": {"school_id": "s1", "student_id": student, "grade": 5, "subject": "math"},
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "l.db"


@pytest.fixture
def rival(store: Path) -> Iterator[Ledger]:
    app = open_ledger(Settings(event_store=f"sqlite:///{store}"))
    yield app
    app.close()


def losing_ledger(store: Path, pauses: list[float], between: Callable[[int], None]) -> Ledger:
    """A Ledger on `store` that runs `between(n)` after its n-th snapshot read (0-based),
    before it appends: where another process's commit makes it lose the race."""
    app = open_ledger(Settings(event_store=f"sqlite:///{store}"))
    app._pause = pauses.append  # what the constructor's `pause` sets; open_ledger keeps sleep
    read = app.recorder.read_batch
    reads = iter(range(10_000))

    def read_then_rival_commits(*args: Any, **kwargs: Any) -> Any:
        snapshot = read(*args, **kwargs)
        between(next(reads))
        return snapshot

    app.recorder.read_batch = read_then_rival_commits  # type: ignore[method-assign]
    return app


def keys_of(store: Path) -> int:
    with sqlite3.connect(store) as conn:
        return int(conn.execute("SELECT count(*) FROM student_keys").fetchone()[0])


def test_a_ledger_that_loses_a_race_reads_again_and_stores_its_batch_once(
    store: Path, rival: Ledger
) -> None:
    pauses: list[float] = []

    def rival_commits(n: int) -> None:
        if n == 0:  # the same new student, another session: the rival issues the key first
            assert rival.record_events([request("rival-1", "stu-new")])[0].status == "accepted"

    app = losing_ledger(store, pauses, rival_commits)
    try:
        outcomes = app.record_events([request("mine-1", "stu-new"), request("mine-2", "stu-2")])
    finally:
        app.close()
    assert [o.status for o in outcomes] == ["accepted", "accepted"]
    assert pauses == [0.0]  # read again at once, in the exclusive turn
    assert keys_of(store) == 2  # one key per student: the loser used the rival's
    assert rival.recorder.max_notification_id() == 3


def test_after_a_lost_race_no_other_writer_commits_until_the_loser_has(
    store: Path, rival: Ledger
) -> None:
    """The loser's second read, judge and append hold the exclusive turn: a rival that tries
    to append a conflicting batch meanwhile waits for it, so the loser cannot lose again."""
    pauses: list[float] = []
    rival_done: list[int] = []
    waiting = threading.Thread(
        target=lambda: rival_done.extend(
            o.position or 0 for o in rival.record_events([request("rival-2", "stu-2")])
        )
    )

    def rival_commits(n: int) -> None:
        if n == 0:  # beats the loser's first attempt
            assert rival.record_events([request("rival-1", "stu-1")])[0].status == "accepted"
        if n == 1:  # tries again during the loser's second attempt, and must wait for it
            waiting.start()
            waiting.join(timeout=1.0)  # time to overtake it, were it not excluded
            assert waiting.is_alive() and not rival_done

    app = losing_ledger(store, pauses, rival_commits)
    try:
        outcomes = app.record_events([request("mine-1", "stu-1"), request("mine-2", "stu-2")])
    finally:
        app.close()
    waiting.join()
    assert [o.status for o in outcomes] == ["accepted", "accepted"]
    assert pauses == [0.0]  # one loss, then one attempt in the exclusive turn
    mine = max(o.position or 0 for o in outcomes)
    assert rival_done and rival_done[0] > mine  # the rival's append came after
    assert keys_of(store) == 2


def test_the_turn_file_is_readable_by_whoever_may_read_the_database(store: Path) -> None:
    """Read access is all a flock needs: an importer run as another user, who may read and
    write the database, must be able to take turns beside the server."""
    store.write_bytes(b"")
    store.chmod(0o664)
    turns = FileTurns(str(store))
    with turns.shared():
        pass
    assert (store.parent / (store.name + SUFFIX)).stat().st_mode & 0o777 == 0o664 & ~umask()
    with turns.exclusive():
        assert turns.holds_exclusive()
        with turns.shared():  # inside its own exclusive turn a writer does not wait for itself
            pass
    assert not turns.holds_exclusive()


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
