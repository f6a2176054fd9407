"""End-to-end lag at a held rate: append → relay → broker → projector → queryable.

Each part runs as it does in production: the emitter, the relay (`tutorledger relay`) and
the projector (`tutorledger project`, against a ClickHouse server) are processes of their
own; on chdb, whose data dir one process at a time may open, the projector is a thread of
this process, which only watches. The emitter appends a chunk every TICK seconds on a
fixed schedule (the n-th chunk is due at start + n·TICK, so sleep overshoot never lowers
the rate; a late chunk is sent at once) and reports when each append committed. This
process polls the complete-prefix position (the one `/readyz` reports) and times each
chunk from its commit to the moment it is queryable; every event of a chunk gets its
chunk's latency. The report says whether the rate was actually held.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from tutorledger.bench.common import Stage
from tutorledger.infra.settings import Settings

TICK = 0.1  # seconds between appends: ten chunks a second
POLL = 0.02  # seconds between two reads of the projected position
WARMUP = 100  # events appended (and awaited) before the clock starts


def say(*parts: object) -> None:
    """One line to the watcher (stdout is the emitter's channel, not a log)."""
    sys.stdout.write(" ".join(map(str, parts)) + "\n")
    sys.stdout.flush()


def emit(store_url: str, rate: int, seconds: float) -> None:
    """Emitter process: warm up, wait for a line on stdin, then append `rate`·`seconds`
    events on the schedule; one line on stdout per append (monotonic clock: the watcher
    reads the same clock)."""
    from tutorledger.bench.district import DistrictSpec, generate
    from tutorledger.infra.eventstore.store import open_ledger

    spec = DistrictSpec(district_id="lag-district", students=int(rate * seconds / 3) + 200,
                        days=3, duplicate_rate=0.0)  # fmt: skip
    events = generate(spec).events[: WARMUP + int(rate * seconds)]
    ledger = open_ledger(Settings(event_store=store_url))
    warm = ledger.record_events(events[:WARMUP])
    say("warm", max(o.position or 0 for o in warm))
    sys.stdin.readline()
    chunk = max(1, round(rate * TICK))
    began = time.monotonic()
    for n, i in enumerate(range(WARMUP, len(events), chunk)):
        due = began + n * TICK
        time.sleep(max(0.0, due - time.monotonic()))
        outcomes = ledger.record_events(events[i : i + chunk])
        top = max(o.position or 0 for o in outcomes)
        say("chunk", due, time.monotonic(), top, len(outcomes))
    say("done", began, time.monotonic())
    ledger.close()


def start_emitter(store_url: str, rate: int, seconds: float, log: Path) -> tuple[Any, Any]:
    """The emitter process and a queue of its parsed lines (a reader thread fills it)."""
    args = [sys.executable, "-m", "tutorledger.bench.lag", store_url, str(rate), str(seconds)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=log.open("ab"), text=True)  # fmt: skip
    lines: Queue[tuple[Any, ...]] = Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            kind, *values = line.split()
            lines.put((kind, *(float(v) if "." in v else int(v) for v in values)))
        lines.put(("exit",))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def spawn_cli(
    command: str,
    settings: Settings,
    log: Path,
    args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A `tutorledger` worker process configured by environment, as operators run it."""
    env = dict(os.environ)
    env.update({
        "TUTORLEDGER_EVENT_STORE": settings.event_store,
        "TUTORLEDGER_STREAM": settings.stream,
        "TUTORLEDGER_CLICKHOUSE": settings.clickhouse,
        "TUTORLEDGER_KAFKA_TOPIC": settings.kafka_topic,
        "TUTORLEDGER_KAFKA_DEAD_LETTER_TOPIC": settings.kafka_dead_letter_topic,
        "TUTORLEDGER_KAFKA_GROUP": settings.kafka_group,
        "TUTORLEDGER_KAFKA_PARTITIONS": str(settings.kafka_partitions),
    })  # fmt: skip
    env.update(extra_env or {})
    cli = Path(sys.executable).parent / "tutorledger"
    return subprocess.Popen([str(cli), command, *args], env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)  # fmt: skip


class InProcessProjector:
    """The chdb projector as a thread of this process (chdb: one process per data dir)."""

    def __init__(self, settings: Settings, store: Any) -> None:
        from tutorledger.consumers.kafka_projector import KafkaProjector
        from tutorledger.infra.kafka import make_consumer, make_producer

        self.consumer = make_consumer(settings)
        self.consumer.subscribe([settings.kafka_topic])
        self.dlq = make_producer(settings)
        worker = KafkaProjector(self.consumer, store, self.dlq, settings.kafka_dead_letter_topic,
                                settings.projector_batch_size)  # fmt: skip
        self.stop = threading.Event()
        self.thread = threading.Thread(target=worker.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        self.consumer.close()
        self.dlq.close()


@dataclass
class Chunk:
    """One append: when it was due and committed, its top position, when it was relayed
    (acknowledged by the broker) and when it was queryable."""

    due: float
    done: float
    top: int
    events: int
    relayed: float | None = None
    visible: float | None = None


def drain(out: Any, chunks: list[Chunk], emitter: dict[str, float]) -> None:
    """Take every line the emitter has sent so far."""
    while True:
        try:
            msg = out.get_nowait()
        except Empty:
            return
        if msg[0] == "exit" and not emitter:
            raise RuntimeError("the emitter exited early (see its log)")
        if msg[0] == "chunk":
            chunks.append(Chunk(*msg[1:]))
        elif msg[0] == "done":
            emitter.update(began=msg[1], ended=msg[2])


def watch(visible: Callable[[], int], relayed: Callable[[], int], out: Any,
          timeout: float = 300.0) -> tuple[list[Chunk], dict[str, float]]:  # fmt: skip
    """Poll the relay's and the projections' positions until the emitter is done and every
    chunk is queryable (or `timeout` after the last append)."""
    chunks: list[Chunk] = []
    emitter: dict[str, float] = {}
    waiting: list[Chunk] = []
    while not emitter or waiting:
        seen = len(chunks)
        drain(out, chunks, emitter)
        waiting.extend(chunks[seen:])
        if emitter and time.monotonic() > emitter["ended"] + timeout:
            break
        relay_at, shown_at = relayed(), visible()
        now = time.monotonic()
        for c in waiting:
            if c.relayed is None and c.top <= relay_at:
                c.relayed = now
            if c.top <= shown_at:
                c.visible = now
        waiting = [c for c in waiting if c.visible is None]
        time.sleep(POLL)
    return chunks, emitter


def percentiles(values: list[float], prefix: str) -> dict[str, float]:
    ordered = sorted(values) or [float("nan")]
    at = {q: ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] for q in (50, 95, 99)}
    return {f"{prefix}p{q}_ms": round(v * 1000, 1) for q, v in at.items()}


def summarize(label: str, rate: int, chunks: list[Chunk], emitter: dict[str, float]) -> Stage:
    """The stage: achieved append rate, whether it was held, latency percentiles (commit →
    queryable; commit → relayed, for where the time goes)."""
    events = sum(c.events for c in chunks)
    wall = emitter.get("ended", 0.0) - emitter.get("began", 0.0)
    achieved = events / wall if wall > 0 else 0.0
    lags = [c.visible - c.done for c in chunks if c.visible is not None for _ in range(c.events)]
    relay = [c.relayed - c.done for c in chunks if c.relayed is not None for _ in range(c.events)]
    late = sorted(c.done - c.due for c in chunks) or [0.0]
    return Stage(f"end-to-end lag ({label})", events, wall, extra={
        "target_events_per_second": rate,
        "sustained": bool(emitter) and achieved >= 0.97 * rate,
        "append_late_p99_ms": round(late[int(0.99 * (len(late) - 1))] * 1000, 1),
        "events_seen": len(lags),
        **percentiles(lags, ""),
        "max_ms": round(max(lags, default=float("nan")) * 1000, 1),
        **percentiles(relay, "relayed_"),
    })  # fmt: skip


def sustained_lag(bootstrap: str, clickhouse: str, workdir: Path, rate: int = 2000,
                  seconds: float = 60.0) -> Stage:  # fmt: skip
    """Own ledger, topic and group; relay (and on a server, projector) as processes."""
    from tutorledger.consumers.kafka_projector import stream_position
    from tutorledger.consumers.relay import relay_position
    from tutorledger.infra.clickhouse import open_projection_store
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.kafka import ensure_topics
    from tutorledger.projections.schema import migrate

    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        event_store=f"sqlite:///{workdir}/lag-{tag}.db", stream=f"kafka://{bootstrap}",
        clickhouse=clickhouse, kafka_topic=f"lag-{tag}", kafka_dead_letter_topic=f"lag-dlq-{tag}",
        kafka_group=f"lag-{tag}", kafka_partitions=3,
    )  # fmt: skip
    ensure_topics(settings)
    store = open_projection_store(settings)
    migrate(store)
    emitter, out = start_emitter(settings.event_store, rate, seconds, workdir / f"lag-{tag}.log")
    first = out.get(timeout=600)
    if first[0] != "warm":
        raise RuntimeError("the emitter exited early (see its log)")
    warm = first[1]  # the ledger exists from here: the relay can start
    procs = [spawn_cli("relay", settings, workdir / f"lag-{tag}-relay.log")]
    chdb = settings.projection_kind == "chdb"
    local = InProcessProjector(settings, store) if chdb else None
    if not chdb:
        procs.append(spawn_cli("project", settings, workdir / f"lag-{tag}-project.log"))
    ledger = open_ledger(settings)
    tracking = ledger.factory.tracking_recorder()
    try:
        settle = time.monotonic() + 300  # group join, topic metadata, first batch
        while stream_position(store) < warm and time.monotonic() < settle:
            time.sleep(0.1)
        assert emitter.stdin is not None
        emitter.stdin.write("go\n")
        emitter.stdin.flush()
        chunks, figures = watch(lambda: stream_position(store),
                                lambda: relay_position(tracking), out)  # fmt: skip
    finally:
        emitter.kill()
        emitter.wait(timeout=60)
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
        if local is not None:
            local.close()
        store.close()
        ledger.close()
    label = "ClickHouse server" if not chdb else "chdb"
    return summarize(f"{label}, {rate}/s for {seconds:.0f} s", rate, chunks, figures)


if __name__ == "__main__":
    emit(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
