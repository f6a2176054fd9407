"""An import's next batches read and converted in a child process while this one records.

Why: reading a vendor export and turning its rows into envelopes (CSV, the mapping, time
zones) was about a seventh of an import's CPU and holds the GIL, so a thread could not
overlap it with recording (measured: no gain); a forked child on another core can. The child
only reads the source and converts rows: batches arrive here whole and in order, and
everything that writes (the ledger, the checkpoint, the rejection list) stays in this
process, so an interrupted import resumes exactly as before.

The child ends with its pipe: when this process stops reading (an error, Ctrl-C, kill -9),
its next send fails and it exits; it ignores SIGINT so Ctrl-C stops the import once.
"""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

from tutorledger.infra.session_mapping import RowConverter
from tutorledger.infra.session_reader import Batch, batches

# Below this many bytes left to read, starting a child costs more than it saves.
PREFETCH_MIN_BYTES = 1 << 20
_JOIN_SECONDS = 5.0


def can_prefetch() -> bool:
    """Forking is what makes the child cheap to start (no re-import); not every OS has it."""
    return "fork" in multiprocessing.get_all_start_methods()


@contextmanager
def prefetched_batches(
    path: Path,
    converter: RowConverter,
    offset: int = 0,
    line: int = 0,
    min_bytes: int = PREFETCH_MIN_BYTES,
) -> Iterator[Iterator[Batch]]:
    """`session_reader.batches(path, converter, offset, line)`, the same batches in the same
    order, converted one batch ahead by a child process when at least `min_bytes` remain."""
    if not can_prefetch() or path.stat().st_size - offset < min_bytes:
        yield batches(path, converter, offset, line)
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_produce, args=(receiver, sender, path, converter, offset, line), daemon=True
    )
    child.start()
    sender.close()  # the child holds the only writing end: its exit ends our reads
    try:
        yield _received(receiver)
    finally:
        receiver.close()
        child.join(_JOIN_SECONDS)
        if child.is_alive():  # blocked converting a huge row: it would exit at its next send
            child.terminate()
            child.join()


def _received(receiver: Connection) -> Iterator[Batch]:
    while True:
        try:
            kind, payload = pickle.loads(receiver.recv_bytes())
        except EOFError:
            raise RuntimeError("the import's reader process ended without finishing") from None
        if kind == "end":
            return
        if kind == "error":
            raise payload
        yield payload


def _produce(receiver: Connection, sender: Connection, path: Path, converter: RowConverter,
             offset: int, line: int) -> None:  # fmt: skip
    """The child: convert and send every batch, then an end mark (or the error that
    stopped it). Objects inherited from the parent are frozen so that this process never
    finalises one of them (a connection's destructor would speak on the parent's socket).
    Its copy of the reading end is closed first: held open here, a dead parent's pipe
    would never break and the child would wait on it forever."""
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    receiver.close()
    try:
        try:
            for batch in batches(path, converter, offset, line):
                sender.send_bytes(pickle.dumps(("batch", batch), pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent stopped reading: nothing left to do
        except Exception as exc:  # handed to the parent, which raises it where it reads
            sender.send_bytes(_error_frame(exc))
            return
        sender.send_bytes(pickle.dumps(("end", None)))
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        sender.close()


def _error_frame(exc: Exception) -> bytes:
    """The exception itself when it survives pickling, else its type and message."""
    try:
        frame = pickle.dumps(("error", exc))
        pickle.loads(frame)
        return frame
    except Exception:
        return pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
