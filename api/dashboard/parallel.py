"""Independent figures of a page, computed at the same time where the store allows it.

A ClickHouse server answers queries in parallel, so the figures run on worker threads, each
with its own connection (ServerStore keeps one client per thread; a worker closes its own
when it ends). chdb is safe to call from threads but not in parallel through one store: the
store holds one chdb session (one engine per process and data dir) behind a lock, and
chdb's session serialises its calls too, so there the figures run one after another on the
caller's thread, where threads would only queue. Each ClickHouse query already uses every
core (`max_threads`) on either store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore

WORKERS = 4


def run_all(
    store: ProjectionStore, tasks: Mapping[str, Callable[[], Any]], workers: int = WORKERS
) -> dict[str, Any]:
    """Every task's result by name; the first error is raised once all have stopped."""
    if store.kind == "chdb" or workers < 2 or len(tasks) < 2:
        return {name: task() for name, task in tasks.items()}
    pending = list(tasks.items())
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            while True:
                with lock:
                    if errors or not pending:
                        return
                    name, task = pending.pop(0)
                try:
                    value = task()
                except BaseException as exc:  # re-raised on the caller's thread below
                    with lock:
                        errors.append(exc)
                    return
                with lock:
                    results[name] = value
        finally:
            store.close()  # this thread's connection

    threads = [threading.Thread(target=work) for _ in range(min(workers, len(tasks)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
