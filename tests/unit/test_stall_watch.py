"""StallWatch: which partitions count as stalled, with a consumer double and a hand clock
(the real-broker case is tests/integration/test_long_partition.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kafka import TopicPartition

from tutorledger.consumers.progress import MAX_GAP_SECONDS, StallWatch

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


@dataclass
class Consumer:
    """The four calls the watch makes, answered from plain dicts."""

    positions: dict[TopicPartition, int]
    highs: dict[TopicPartition, int | None]
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    end_calls: int = 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        return self.positions[tp]

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highs[tp]

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.end_calls += 1
        return {tp: self.ends[tp] for tp in tps}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(watch: StallWatch, consumer: Any, clock: Clock, seconds: float, step: float = 0.5) -> Any:
    stalls: Any = []
    for _ in range(int(seconds / step)):
        clock.now += step
        stalls = watch.observe(consumer)
    return stalls


def test_a_partition_behind_its_end_that_does_not_move_is_stalled() -> None:
    clock = Clock()
    consumer = Consumer({P0: 100, P1: 50}, {P0: 900, P1: 50})
    watch = StallWatch(30.0, clock)
    assert run(watch, consumer, clock, 29.0) == []
    stalls = run(watch, consumer, clock, 2.0)
    assert [(s.partition, s.position, s.end_offset) for s in stalls] == [(0, 100, 900)]


def test_progress_or_reaching_the_end_resets_the_count() -> None:
    clock = Clock()
    consumer = Consumer({P0: 100}, {P0: 900})
    watch = StallWatch(30.0, clock)
    run(watch, consumer, clock, 25.0)
    consumer.positions[P0] = 101  # a record came
    assert run(watch, consumer, clock, 25.0) == []
    consumer.positions[P0] = 900  # caught up: idle is fine however long
    assert run(watch, consumer, clock, 120.0) == []


def test_time_away_from_polling_counts_little() -> None:
    """A long ClickHouse retry inside one step is not polling time."""
    clock = Clock()
    consumer = Consumer({P0: 100}, {P0: 900})
    watch = StallWatch(30.0, clock)
    watch.observe(consumer)
    clock.now += 600.0
    assert watch.observe(consumer) == []
    assert run(watch, consumer, clock, 30.0 - MAX_GAP_SECONDS - 1.0) == []


def test_without_a_high_watermark_the_end_offsets_are_asked_sparingly() -> None:
    clock = Clock()
    consumer = Consumer({P0: 100}, {P0: None}, ends={P0: 900})
    watch = StallWatch(30.0, clock)
    stalls = run(watch, consumer, clock, 31.0)
    assert [(s.partition, s.end_offset) for s in stalls] == [(0, 900)]
    assert consumer.end_calls <= 4  # every 10 s, not every poll


@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_never_stalled_while_each_poll_moves_or_is_at_the_end(moves: list[bool]) -> None:
    clock = Clock()
    consumer = Consumer({P0: 0}, {P0: 10_000})
    watch = StallWatch(1.0, clock)
    for moved in moves:
        clock.now += 2.0
        if moved:
            consumer.positions[P0] += 1
        else:
            consumer.highs[P0] = consumer.positions[P0]  # nothing left: at the end
        assert watch.observe(consumer) == []
        consumer.highs[P0] = 10_000
