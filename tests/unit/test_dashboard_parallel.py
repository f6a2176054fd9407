"""The page's figures run together on a ClickHouse server, one after another on chdb."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tutorledger.api.dashboard.parallel import run_all


class Recorder:
    """A store that only records which thread asked and which threads closed."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.closed: list[int] = []
        self.lock = threading.Lock()

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        return []

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        raise AssertionError("pages never write")

    def close(self) -> None:
        with self.lock:
            self.closed.append(threading.get_ident())


def test_on_a_server_each_figure_runs_on_a_worker_that_closes_its_connection() -> None:
    store = Recorder("clickhouse")
    barrier = threading.Barrier(2, timeout=30)

    def meet(name: str) -> tuple[str, int]:
        barrier.wait()  # two tasks must be running at the same time to get past this
        return name, threading.get_ident()

    tasks = {f"t{i}": (lambda i=i: meet(f"t{i}")) for i in range(6)}
    got = run_all(store, tasks, workers=2)  # type: ignore[arg-type]
    assert {name: value[0] for name, value in got.items()} == {n: n for n in tasks}
    workers = {value[1] for value in got.values()}
    assert len(workers) == 2 and threading.get_ident() not in workers
    assert sorted(store.closed) == sorted(workers)


def test_on_chdb_the_figures_run_in_turn_on_the_callers_thread() -> None:
    store = Recorder("chdb")
    got = run_all(store, {"a": threading.get_ident, "b": threading.get_ident})  # type: ignore[arg-type]
    assert set(got.values()) == {threading.get_ident()} and store.closed == []


def test_a_failing_figure_fails_the_page_after_the_others_stop() -> None:
    store = Recorder("clickhouse")

    def fail() -> None:
        raise RuntimeError("ClickHouse said no")

    with pytest.raises(RuntimeError, match="said no"):
        run_all(store, {"ok": lambda: 1, "bad": fail, "also": lambda: 2}, workers=3)  # type: ignore[arg-type]
    assert len(store.closed) == 3
