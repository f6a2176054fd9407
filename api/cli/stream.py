"""Stream commands: `relay` (ledger → Kafka) and `project` (Kafka → ClickHouse), the two
production worker processes. Merged into the `tutorledger` app.

Both run until SIGTERM/SIGINT and refuse, before contacting Kafka, a ledger `migrate-ledger`
has not finished filling (exit 2, migration_incomplete).
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from tutorledger.api.cli.common import ClickhouseOpt, StoreOpt, console, fail, load_settings
from tutorledger.domain.errors import TutorLedgerError
from tutorledger.infra.settings import Settings

commands = typer.Typer()


def stop_on_signals() -> threading.Event:
    """SIGTERM/SIGINT finish the current batch, then exit cleanly."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def require_kafka(settings: Settings) -> None:
    if settings.embedded_stream:
        console.print(
            "[red]TUTORLEDGER_STREAM is 'embedded':[/] set it to kafka://host:port "
            "(in embedded mode `serve` projects in-process)."
        )
        raise typer.Exit(2)


@commands.command()
def relay(
    batch_size: Annotated[int, typer.Option(min=1, help="Ledger events per produce batch")] = 1000,
    event_store: StoreOpt = None,
) -> None:
    """Stream the ledger to Kafka (production); resumes from its position in the store.

    Refuses a ledger `migrate-ledger` has not finished (exit 2, migration_incomplete).
    """
    from tutorledger.consumers.continuity import refuse_unfinished
    from tutorledger.consumers.relay import Relay
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.kafka import ensure_topics, make_producer

    settings = load_settings(event_store=event_store)
    require_kafka(settings)
    ledger = open_ledger(settings)
    try:
        refuse_unfinished(ledger)  # before Kafka is contacted or anything is written
    except TutorLedgerError as exc:
        ledger.close()
        raise fail(exc) from exc
    stop = stop_on_signals()
    ensure_topics(settings)
    producer = make_producer(settings)
    try:
        worker = Relay(
            ledger, producer, settings.kafka_topic, ledger.factory.tracking_recorder(), batch_size
        )
        console.print(f"relaying from position {worker.position} to {settings.kafka_topic}")
        worker.run(stop)
    finally:
        producer.close(timeout=10)
        ledger.close()


@commands.command()
def project(
    batch_size: Annotated[int | None, typer.Option(min=1, help="Records per insert")] = None,
    batch_seconds: Annotated[float, typer.Option(help="Longest wait to fill a batch")] = 0.5,
    clickhouse: ClickhouseOpt = None,
    event_store: StoreOpt = None,
) -> None:
    """Consume Kafka into ClickHouse (production); offsets are committed after each insert.

    Exits 3 (projector_stalled) when an assigned partition stays behind its end offset
    without yielding a record for TUTORLEDGER_PROJECTOR_STALL_SECONDS: restart it.

    Looks at the event store once at startup (read-only): a ledger `migrate-ledger` has not
    finished is refused (exit 2, migration_incomplete).
    """
    from tutorledger.consumers.continuity import refuse_unfinished_store
    from tutorledger.consumers.kafka_projector import KafkaProjector
    from tutorledger.domain.errors import ProjectorStalled
    from tutorledger.infra.clickhouse import open_projection_store
    from tutorledger.infra.kafka import ensure_topics, make_consumer, make_producer
    from tutorledger.projections.schema import migrate

    settings = load_settings(
        clickhouse=clickhouse, event_store=event_store, projector_batch_size=batch_size
    )
    require_kafka(settings)
    try:
        refuse_unfinished_store(settings.event_store)
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    stop = stop_on_signals()
    ensure_topics(settings)
    store = open_projection_store(settings)
    migrate(store)
    consumer = make_consumer(settings)
    consumer.subscribe([settings.kafka_topic])
    dead_letters = make_producer(settings)
    try:
        worker = KafkaProjector(
            consumer,
            store,
            dead_letters,
            settings.kafka_dead_letter_topic,
            settings.projector_batch_size,
            batch_seconds,
            settings.projector_stall_seconds,
        )
        console.print(f"projecting {settings.kafka_topic} as group {settings.kafka_group}")
        worker.run(stop)
    except ProjectorStalled as exc:
        console.print(f"[red]{exc.code}:[/] {exc.message}", soft_wrap=True)
        raise typer.Exit(3) from exc
    finally:
        consumer.close()
        dead_letters.close(timeout=10)
        store.close()
