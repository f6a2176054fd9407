"""Session-history import: a vendor export → lifecycle events through the ledger's own record
path (`record_events`, batches of ≤ 1000), resumable after a crash, summarised in a report.

Why it is safe to interrupt: event ids come from the source row, so anything recorded twice
is a duplicate the ledger refuses to store again. After each recorded batch a checkpoint
(`<report>.state`) notes the byte offset reached, the counts so far and how much of the
rejection list (`<report>.rejections`) belongs to it; both are flushed to disk first. A
re-run with the same source, mapping, district and store resumes at that offset; anything
the lost run recorded after its last checkpoint comes back as `duplicate`. When the import
ends the report is written and the two side files are removed.

Sources of a megabyte or more are read and converted one batch ahead by a child process
(`batch_prefetch`), on another core; recording and checkpointing stay here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tutorledger.domain.ledger import Outcome
from tutorledger.domain.provenance import Provenance, by_import
from tutorledger.infra.importers.batch_prefetch import PREFETCH_MIN_BYTES, prefetched_batches
from tutorledger.infra.importers.session_mapping import RowConverter, RowProblem
from tutorledger.infra.importers.session_reader import Batch

log = logging.getLogger(__name__)
MAX_LISTED_REJECTIONS = 10_000


class EventRecorder(Protocol):
    """The ledger's normal write path (validation, lifecycle rules, idempotent append)."""

    def record_events(
        self, raws: Sequence[Any], provenance: Provenance | None = None
    ) -> list[Outcome]: ...


@dataclass
class Checkpoint:
    """Progress that survives a crash; valid only for the same `fingerprint`."""

    fingerprint: str
    offset: int = 0
    line: int = 0
    rows: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    listed: int = 0
    listed_bytes: int = 0
    runs: int = 0


def fingerprint(source: Path, *parts: str) -> str:
    """What a checkpoint belongs to: the source's bytes plus mapping, district and store."""
    digest = hashlib.sha256()
    with source.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def file_sha256(source: Path) -> str:
    """The source file's SHA-256 (hex): what each imported event's provenance names."""
    digest = hashlib.sha256()
    with source.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class SessionImport:
    """One import of one source file into one district; `run` may be called after a crash."""

    def __init__(
        self, recorder: EventRecorder, source: Path, converter: RowConverter, report: Path,
        context: str = "", prefetch_min_bytes: int = PREFETCH_MIN_BYTES,
        provider: str | None = None,
    ) -> None:  # fmt: skip
        self.recorder, self.source, self.converter, self.report = (
            recorder,
            source,
            converter,
            report,
        )
        self.prefetch_min_bytes = prefetch_min_bytes  # sources this large convert in a child
        self.state_path = report.with_name(report.name + ".state")
        self.rejections_path = report.with_name(report.name + ".rejections")
        mapping = converter.mapping.model_dump_json()
        parts = (mapping, converter.district_id, context) + ((provider,) if provider else ())
        self.fingerprint = fingerprint(source, *parts)
        # Each recorded event names this import (domain/provenance.py), when a provider is given.
        self.provenance = None if provider is None else by_import(provider, file_sha256(source))

    def _resume(self) -> tuple[Checkpoint, int]:
        """The checkpoint to continue from (fresh if none matches) and the offset it starts at."""
        state = Checkpoint(self.fingerprint)
        if self.state_path.exists():
            saved = Checkpoint(**json.loads(self.state_path.read_text(encoding="utf-8")))
            if saved.fingerprint == self.fingerprint:
                state = saved
        with self.rejections_path.open("ab") as f:
            f.truncate(state.listed_bytes)
        state.runs += 1
        return state, state.offset

    def run(
        self,
        on_start: Callable[[int, int], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Import from the checkpoint to the end; returns the report (also written to disk).

        `on_start(total_bytes, bytes_done)` once, then `on_progress(bytes, events)` per batch.
        """
        state, resumed_at = self._resume()
        if on_start:
            on_start(self.source.stat().st_size, resumed_at)
        log.info("session import started", extra={"district_id": self.converter.district_id,
                 "resumed_at_line": state.line, "run": state.runs})  # fmt: skip
        began, events_this_run = time.perf_counter(), 0
        source = prefetched_batches(self.source, self.converter, state.offset, state.line,
                                    self.prefetch_min_bytes)  # fmt: skip
        with source as stream:
            for batch in stream:
                outcomes = (
                    self.recorder.record_events(batch.events, self.provenance)
                    if batch.events
                    else []
                )
                self._tally(state, batch, outcomes)
                _write_atomically(self.state_path, json.dumps(asdict(state)))
                events_this_run += len(batch.events)
                if on_progress:
                    on_progress(batch.offset - resumed_at, len(batch.events))
                resumed_at = batch.offset
        seconds = time.perf_counter() - began
        report = self._report(state, seconds, events_this_run)
        _write_atomically(self.report, json.dumps(report, indent=2) + "\n")
        self.state_path.unlink(missing_ok=True)
        self.rejections_path.unlink(missing_ok=True)
        log.info("session import finished", extra={"district_id": self.converter.district_id,
                 "accepted": state.accepted, "duplicate": state.duplicate,
                 "rejected": state.rejected})  # fmt: skip
        return report

    def _tally(self, state: Checkpoint, batch: Batch, outcomes: list[Outcome]) -> None:
        """Count the batch's outcomes and append its rejections (flushed before the state)."""
        rejected = list(batch.problems)
        for event, line, outcome in zip(batch.events, batch.lines, outcomes, strict=True):
            if outcome.status == "rejected" and outcome.error is not None:
                error = outcome.error
                problem = RowProblem(line, event["session_id"], event["type"], error.code,
                                     _explain(error.message, error.details))  # fmt: skip
                rejected.append(problem)
            else:
                setattr(state, outcome.status, getattr(state, outcome.status) + 1)
        state.rejected += len(rejected)
        for problem in rejected:
            state.rejected_by_code[problem.code] = state.rejected_by_code.get(problem.code, 0) + 1
        listed = rejected[: max(0, MAX_LISTED_REJECTIONS - state.listed)]
        with self.rejections_path.open("ab") as f:
            for problem in sorted(listed, key=lambda p: p.line):
                f.write(json.dumps(asdict(problem)).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
            state.listed_bytes = f.tell()
        state.listed += len(listed)
        state.offset, state.line, state.rows = batch.offset, batch.line, state.rows + batch.rows

    def _report(self, state: Checkpoint, seconds: float, events: int) -> dict[str, Any]:
        with self.rejections_path.open("rb") as f:
            listed = [json.loads(line) for line in f]
        return {
            "source": str(self.source),
            "district_id": self.converter.district_id,
            "provenance": None if self.provenance is None else self.provenance.record(),
            "rows": state.rows,
            "events": {k: getattr(state, k) for k in ("accepted", "duplicate", "rejected")},
            "rejected_by_code": dict(sorted(state.rejected_by_code.items())),
            "rejections": listed,
            "rejections_listed": len(listed),
            "runs": state.runs,
            "this_run": {
                "events": events,
                "seconds": round(seconds, 3),
                "events_per_second": round(events / seconds, 1) if seconds else None,
            },
        }


def _explain(message: str, details: Any) -> str:
    """A rejection's message with the fields validation named (never their values)."""
    if not isinstance(details, list):
        return message
    named = [
        f"{'.'.join(d['loc'])}: {d['msg']}" for d in details if isinstance(d, dict) and "loc" in d
    ]
    return f"{message} ({'; '.join(named)})" if named else message
