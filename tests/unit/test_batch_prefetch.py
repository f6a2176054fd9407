"""The import's reader in a child process: the same batches in the same order as reading in
process (from the start or a resume offset, bad rows included, whenever the child takes
over), its errors raised here, and no child left behind however the import stops."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from imports import BAD_CODES, chain_head, converter, events_in_order, truth, vendor_csv
from waiting import wait_until

from tutorledger.domain.ledger import Ledger
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.importers.batch_prefetch import handover, prefetched_batches, send_batches
from tutorledger.infra.importers.session_mapping import RowConverter
from tutorledger.infra.importers.session_reader import Batch, batches
from tutorledger.infra.importers.sessions import SessionImport
from tutorledger.infra.settings import Settings

D = "prefetch-d"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prefetch") / "sessions.csv"
    return vendor_csv(path, truth(D, students=400), bad_rows=True)


def as_tuple(batch: Batch) -> tuple[Any, ...]:
    return (batch.events, batch.lines, batch.problems, batch.rows, batch.offset, batch.line)


def in_process(path: Path, offset: int = 0, line: int = 0) -> list[tuple[Any, ...]]:
    return [as_tuple(b) for b in batches(path, converter(D), offset, line)]


class Exploding(RowConverter):
    """Fails on its 50th row (in the first batch) with the given error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(converter(D).mapping, D, "UTC")
        self.error, self.seen = error, 0

    def events(self, line: int, row: Any) -> Any:
        self.seen += 1
        if self.seen == 50:
            raise self.error
        return super().events(line, row)


class Unpicklable(Exception):
    def __init__(self, *, detail: str) -> None:  # keyword-only: unpickling it fails
        super().__init__(detail)


def sending(path: Path, conv: RowConverter, offset: int = 0, line: int = 0) -> Connection:
    """A stand-in child: a thread sending the batches, its first frame already waiting."""
    receiver, sender = multiprocessing.Pipe(duplex=False)
    threading.Thread(target=send_batches, args=(sender, path, conv, offset, line),
                     daemon=True).start()  # fmt: skip
    wait_until(receiver.poll, "the first frame")
    return receiver


def test_the_child_takes_over_after_the_batch_made_here(source: Path) -> None:
    expected = in_process(source)
    assert len(expected) >= 3 and any(b[2] for b in expected)  # several, with bad rows
    receiver = sending(source, converter(D))
    here = batches(source, converter(D))
    got = [as_tuple(b) for b in handover(here, receiver, 0)]
    assert got == expected  # the first from here, the child's from the second on
    resume = expected[1]  # a checkpoint: resume after the second batch
    receiver = sending(source, converter(D), resume[4], resume[5])
    here = batches(source, converter(D), resume[4], resume[5])
    assert [as_tuple(b) for b in handover(here, receiver, resume[4])] == expected[2:]


@pytest.mark.parametrize(
    "error, raised, text",
    [(ValueError("row 50 is odd"), ValueError, "row 50 is odd"),
     (Unpicklable(detail="cannot travel"), RuntimeError, "Unpicklable: cannot travel")],
)  # fmt: skip
def test_the_childs_error_is_raised_where_the_batches_are_read(
    source: Path, error: Exception, raised: type[Exception], text: str
) -> None:
    receiver = sending(source, Exploding(error))
    stream = handover(batches(source, converter(D)), receiver, 0)
    assert next(stream)  # made here, before the child's frames are looked at
    with pytest.raises(raised, match=text):
        next(stream)


def test_a_child_that_dies_mid_stream_is_an_error_not_an_early_end(source: Path) -> None:
    receiver, sender = multiprocessing.Pipe(duplex=False)
    sender.close()  # the pipe closes without an end mark: readable, then EOF
    stream = handover(batches(source, converter(D)), receiver, 0)
    next(stream)
    with pytest.raises(RuntimeError, match="ended without finishing"):
        next(stream)


def test_through_a_real_child_the_batches_are_the_same(source: Path) -> None:
    expected = in_process(source)
    with prefetched_batches(source, converter(D), min_bytes=0) as stream:
        assert [as_tuple(b) for b in stream] == expected
    assert multiprocessing.active_children() == []


def test_a_small_source_is_read_in_process(source: Path) -> None:
    with prefetched_batches(source, converter(D), min_bytes=1 << 40) as stream:
        next(stream)
        assert multiprocessing.active_children() == []


def test_stopping_early_leaves_no_child(source: Path) -> None:
    with pytest.raises(KeyError):
        with prefetched_batches(source, converter(D), min_bytes=0) as stream:
            next(stream)
            raise KeyError("the recorder failed")
    assert multiprocessing.active_children() == []


def test_an_import_through_the_child_equals_one_in_process(source: Path, tmp_path: Path) -> None:
    ledgers: list[Ledger] = []
    reports = []
    try:
        for name, min_bytes in (("child", 0), ("here", 1 << 40)):
            ledger = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/{name}.db"))
            ledgers.append(ledger)
            job = SessionImport(ledger, source, converter(D), tmp_path / f"{name}.json",
                                prefetch_min_bytes=min_bytes)  # fmt: skip
            reports.append(job.run())
        child, here = reports
        assert child["events"] == here["events"] and child["rejections"] == here["rejections"]
        assert child["rejected_by_code"] == BAD_CODES
        assert events_in_order(ledgers[0], D) == events_in_order(ledgers[1], D)
        assert chain_head(ledgers[0], D)[0] == chain_head(ledgers[1], D)[0]
    finally:
        for ledger in ledgers:
            ledger.close()


READER = """
import multiprocessing, sys, time
from pathlib import Path
from imports import converter
from tutorledger.infra.importers.batch_prefetch import prefetched_batches
with prefetched_batches(Path(sys.argv[1]), converter("prefetch-d"), min_bytes=0) as stream:
    next(stream)
    print(multiprocessing.active_children()[0].pid, flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def children(pid: int) -> Iterator[int]:
    for proc in Path("/proc").iterdir():
        try:
            if int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                yield int(proc.name)
        except (OSError, ValueError):
            continue


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_child_exits_when_the_importing_process_is_killed(source: Path) -> None:
    tests = Path(__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), *sys.path])}
    parent = subprocess.Popen([sys.executable, "-c", READER, str(source)], env=env,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child) and child in set(children(parent.pid))
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)
        wait_until(lambda: not alive(child), "the orphaned reader to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
