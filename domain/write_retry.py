"""Appends retried after a lost write race, with jittered exponential backoff.

A writer judges its batch against a snapshot read before it takes the store's write lock.
When another process commits first (a session's next version, a student's key), the append
fails with the store's IntegrityError and the writer reads again. The Ledger does that in
the store's exclusive writer turn (infra/eventstore/write_turns.py), where nobody who
takes turns can overtake it; a process that takes none (an older version, mid-upgrade)
still could, so further attempts wait a random, growing time first ("full jitter"): the
winner commits and the next read sees what beat it. After MAX_ATTEMPTS the caller answers 503.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from eventsourcing.persistence import IntegrityError

from tutorledger.domain.errors import Unavailable

__all__ = ["BASE_DELAY", "MAX_ATTEMPTS", "MAX_DELAY", "Pause", "backoff", "retried"]

T = TypeVar("T")
Pause = Callable[[float], None]

MAX_ATTEMPTS = 10
BASE_DELAY = 0.005  # seconds: about one small append on a busy store
MAX_DELAY = 0.2  # no single wait longer than this; all ten attempts wait < 1 s in sum


def backoff(attempt: int, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait after losing attempt number `attempt` (0-based): uniform in
    [0, min(MAX_DELAY, BASE_DELAY * 2**attempt))."""
    return draw() * min(MAX_DELAY, BASE_DELAY * (1 << min(attempt, 16)))


def retried(
    write: Callable[[], T],
    message: str,
    *,
    pause: Pause = time.sleep,
    draw: Callable[[], float] = random.random,
) -> T:
    """`write()`, run again after each IntegrityError (a lost race) with a backoff between;
    after MAX_ATTEMPTS losses, Unavailable(`message`): the caller answers 503 and the client
    resends, nothing having been stored. `write` must read the state it depends on afresh."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            return write()
        except IntegrityError:
            if attempt == MAX_ATTEMPTS - 1:
                raise Unavailable(message) from None
            pause(backoff(attempt, draw))
    raise AssertionError("unreachable")  # pragma: no cover
