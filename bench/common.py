"""What every benchmark stage shares: the stage record, the raw baseline aggregate and its
store, timing in a fresh interpreter, and the loopback and PostgreSQL helpers.

The stage modules (write_path, migration, lag, stream, metrics_latency) import from here
and `suite` imports them, so the package's imports run one way and none hides in a function.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from eventsourcing.domain import Aggregate, event
from psycopg import sql

from tutorledger.infra.eventstore.store import store_env

BATCH = 1000
T = TypeVar("T")


@dataclass
class Stage:
    name: str
    events: int
    seconds: float
    baseline: str = ""
    baseline_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        base_rate = self.events / self.baseline_seconds if self.baseline_seconds else None
        return {
            "stage": self.name,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.rate, 1),
            "baseline": self.baseline or None,
            "baseline_events_per_second": round(base_rate, 1) if base_rate else None,
            "ratio_to_baseline": round(self.rate / base_rate, 3) if base_rate else None,
            **self.extra,
        }


class RawEvent(Aggregate):
    """Baseline aggregate: one stored event per envelope, no rules, no index."""

    @event("Recorded")
    def __init__(self, envelope: dict[str, Any]) -> None:
        self.envelope = envelope


def in_fresh_process(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` run (and timed, by `work` itself) in a new interpreter. Each side of a
    write-path ratio starts from a clean heap, as the CLI and the server do: run in this
    process after the other side, the second ran up to 15 % slower on the memory the first
    had just freed, whichever side it was."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(work, *args).result()


def timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def raw_env(store_url: str) -> dict[str, str]:
    """The library's own recorder on a separate file or schema: the baseline's own space."""
    ours = ("APPLICATION_RECORDER_TOPIC", "MAPPER_TOPIC")
    env = {k: v for k, v in store_env(store_url).items() if k not in ours}
    if "SQLITE_DBNAME" in env:
        env["SQLITE_DBNAME"] += ".raw"
        return env
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_raw")
    env["POSTGRES_SCHEMA"] = "bench_raw"
    return env


def free_port() -> int:
    """A loopback TCP port that is free right now (the OS picks it, so no collisions)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def drop_database_at(dsn: str, name: str, wait: float = 120) -> None:
    """Drop database `name` through the server `dsn` connects to, even if a leaked
    connection still holds it (PG 13+ ``FORCE``).

    FORCE refuses outright when a session belongs to a role we cannot signal, typically an
    autovacuum worker after heavy schema churn; a plain DROP cancels autovacuum itself, so
    that is tried next, and sessions still in the way are waited out (bounded by `wait`).
    """
    ident = sql.Identifier(name)
    forced = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident)
    plain = sql.SQL("DROP DATABASE IF EXISTS {}").format(ident)
    deadline = time.monotonic() + wait
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            try:
                conn.execute(forced)
                return
            except psycopg.errors.InsufficientPrivilege:
                try:
                    conn.execute(plain)
                    return
                except psycopg.errors.ObjectInUse:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
