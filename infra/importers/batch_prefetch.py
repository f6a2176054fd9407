"""An import's next batches read and converted in a child process while this one records.

Why: reading a vendor export and turning its rows into envelopes (CSV, the mapping, time
zones) was about a seventh of an import's CPU and holds the GIL, so a thread could not
overlap it with recording (measured: no gain); a child process on another core can. The
child only reads the source and converts rows: batches arrive here whole and in order, and
everything that writes (the ledger, the checkpoint, the rejection list) stays in this
process, so an interrupted import resumes exactly as before.

The child is a fresh interpreter (spawned, not forked: this process may hold database pool
threads and their locks). Until it is ready this process converts batches itself, then
takes the child's from the next batch on; both cut the source at the same rows, so the
child's batches up to that point are skipped unread. The child ends with its pipe: when
this process stops reading (an error, Ctrl-C, kill -9), its next send fails and it exits.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import struct
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

from tutorledger.infra.importers.session_mapping import RowConverter
from tutorledger.infra.importers.session_reader import Batch, batches

# Below this many bytes left to read, starting a child costs more than it saves.
PREFETCH_MIN_BYTES = 1 << 20
_JOIN_SECONDS = 5.0
_HEADER = struct.Struct("<Bq")  # frame kind, source offset after the batch
_BATCH, _END, _ERROR = 0, 1, 2


@contextmanager
def prefetched_batches(
    path: Path,
    converter: RowConverter,
    offset: int = 0,
    line: int = 0,
    min_bytes: int = PREFETCH_MIN_BYTES,
) -> Iterator[Iterator[Batch]]:
    """`session_reader.batches(path, converter, offset, line)`: the same batches in the same
    order, converted ahead by a child process when at least `min_bytes` remain."""
    here = batches(path, converter, offset, line)
    if path.stat().st_size - offset < min_bytes:
        yield here
        return
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_produce, args=(sender, path, converter, offset, line), daemon=True
    )
    child.start()
    sender.close()  # the child holds the only writing end: its exit ends our reads
    try:
        yield handover(here, receiver, offset)
    finally:
        here.close()
        receiver.close()
        child.join(_JOIN_SECONDS)
        if child.is_alive():  # busy converting a huge row: it would exit at its next send
            child.terminate()
            child.join()


def handover(
    here: Generator[Batch, None, None], receiver: Connection, offset: int
) -> Iterator[Batch]:
    """Batches converted here until the child has one ready, then the child's after them."""
    done = offset
    for batch in here:
        yield batch
        done = batch.offset
        if receiver.poll():
            break
    else:
        return  # finished here before the child was ready
    while True:
        try:
            frame = receiver.recv_bytes()
        except EOFError:
            raise RuntimeError("the import's reader process ended without finishing") from None
        kind, after = _HEADER.unpack_from(frame)
        if kind == _END:
            return
        if kind == _ERROR:
            raise pickle.loads(frame[_HEADER.size :])
        if after > done:  # earlier ones were converted here
            yield pickle.loads(frame[_HEADER.size :])


def _produce(sender: Connection, path: Path, converter: RowConverter, offset: int,
             line: int) -> None:  # fmt: skip
    """The child. Ctrl-C is the parent's to handle: this process ends when its pipe breaks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_batches(sender, path, converter, offset, line)


def send_batches(sender: Connection, path: Path, converter: RowConverter, offset: int,
                 line: int) -> None:  # fmt: skip
    """Send every batch, then an end mark (or the error that stopped it); stop quietly
    when the reading end is gone."""
    try:
        try:
            for batch in batches(path, converter, offset, line):
                payload = pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
                sender.send_bytes(_HEADER.pack(_BATCH, batch.offset) + payload)
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent stopped reading: nothing left to do
        except Exception as exc:  # handed to the parent, which raises it where it reads
            sender.send_bytes(_HEADER.pack(_ERROR, -1) + _picklable(exc))
            return
        sender.send_bytes(_HEADER.pack(_END, -1))
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        sender.close()


def _picklable(exc: Exception) -> bytes:
    """The exception itself when it survives pickling, else its type and message."""
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
