"""Notices a Kafka consumer that polls without progress while its partitions hold records.

A consumer whose fetches come back empty raises nothing: kafka-python keeps fetching, and a
projector that took "no records" for "nothing to do" sat idle for good while its partitions
were a million events behind (tansu on S3 answers a fetch empty when listing the partition's
batches outlasts the fetch wait; see infra.kafka.make_consumer). This watch turns that
silence into an error: an assigned partition behind its end offset whose position has not
moved for `stall_seconds` of polling is a stall.

Polling time only is counted: a pause between two observations (a long ClickHouse retry
inside one step) counts as at most `MAX_GAP_SECONDS`, so a projector waiting for its sink is
not taken for a stalled one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
MAX_GAP_SECONDS = 5.0
END_OFFSETS_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class Stall:
    """One partition with records it does not get."""

    partition: int
    position: int
    end_offset: int
    seconds: float


@dataclass
class StallWatch:
    stall_seconds: float
    clock: Callable[[], float] = time.monotonic
    _idle: dict[Any, tuple[int, float]] = field(default_factory=dict)  # tp: (position, idle s)
    _ends: dict[Any, int] = field(default_factory=dict)
    _ends_at: float = float("-inf")
    _last: float | None = None

    def observe(self, consumer: Any) -> list[Stall]:
        """Call after each poll cycle; the partitions stalled for `stall_seconds` or more."""
        now = self.clock()
        gap = 0.0 if self._last is None else min(now - self._last, MAX_GAP_SECONDS)
        self._last = now
        assigned = set(consumer.assignment())
        for gone in set(self._idle) - assigned:
            del self._idle[gone]
        stalls = []
        for tp in sorted(assigned):
            position, end = self._position(consumer, tp), self._end(consumer, tp, assigned, now)
            if position is None or end is None or position >= end:
                self._idle.pop(tp, None)
                continue
            before, idle = self._idle.get(tp, (-1, 0.0))  # first seen behind: from 0
            idle = idle + gap if before == position else 0.0
            self._idle[tp] = (position, idle)
            if idle >= self.stall_seconds:
                stalls.append(Stall(tp.partition, position, end, round(idle, 1)))
        return stalls

    @staticmethod
    def _position(consumer: Any, tp: Any) -> int | None:
        try:
            position = consumer.position(tp, timeout_ms=1000)
        except Exception:  # not known yet (no committed offset fetched): no judgement
            return None
        return None if position is None else int(position)

    def _end(self, consumer: Any, tp: Any, assigned: set[Any], now: float) -> int | None:
        """The partition's end: the high watermark of the last fetch response, else (a
        broker whose responses carry none) a ListOffsets answer at most every 10 s."""
        high = consumer.highwater(tp)
        if high is not None and high >= 0:
            return int(high)
        if now - self._ends_at >= END_OFFSETS_EVERY_SECONDS:
            self._ends_at = now
            try:
                ends = consumer.end_offsets(sorted(assigned))
                self._ends = {k: int(v) for k, v in ends.items()}
            except Exception:
                log.warning("end offsets unavailable", exc_info=True)
        return self._ends.get(tp)
