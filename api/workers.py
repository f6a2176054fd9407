"""`serve --workers N`: several uvicorn worker processes sharing one port (Kafka mode only).

uvicorn starts each worker by importing an app factory by name, so everything the command
line resolved (event store, ClickHouse, keys file) is handed over in the environment, read
back by `app_from_environment` in each worker. They also need one dashboard session secret:
with a random secret per process a cookie signed by one worker would fail on the next.
The embedded mode cannot have workers: its projector's chdb data dir is held by one process.
"""

from __future__ import annotations

import os
import secrets

from fastapi import FastAPI

from tutorledger.infra.settings import Settings

FACTORY = "tutorledger.api.workers:app_from_environment"


class WorkersRefused(ValueError):
    """`serve --workers N` (N > 1) asked for with settings several processes cannot share."""

    code = "workers_refused"


class WorkersNeedKafka(WorkersRefused):
    code = "workers_need_kafka"


class WorkersNeedClickHouseServer(WorkersRefused):
    """chdb locks its data dir: the first worker would open it, every other would fail at
    startup, and uvicorn then stops all of them (seen mid-traffic: connections reset)."""

    code = "workers_need_clickhouse_server"


def worker_environment(settings: Settings) -> dict[str, str]:
    """The variables every worker must see to build the same Settings as this process."""
    if settings.embedded_stream:
        raise WorkersNeedKafka(
            "--workers needs TUTORLEDGER_STREAM=kafka://host:port and a ClickHouse server: "
            "the embedded projector's chdb data dir is held by a single process"
        )
    if settings.projection_kind == "chdb":
        raise WorkersNeedClickHouseServer(
            "--workers needs a ClickHouse server (TUTORLEDGER_CLICKHOUSE=clickhouse://…): "
            "a chdb data dir can be opened by one process only"
        )
    env = {
        "TUTORLEDGER_EVENT_STORE": settings.event_store,
        "TUTORLEDGER_STREAM": settings.stream,
        "TUTORLEDGER_CLICKHOUSE": settings.clickhouse,
        "TUTORLEDGER_LOG_LEVEL": settings.log_level,
    }
    if settings.api_keys_file is not None:
        env["TUTORLEDGER_API_KEYS_FILE"] = str(settings.api_keys_file)
    secret = settings.session_secret
    env["TUTORLEDGER_SESSION_SECRET"] = (
        secret.get_secret_value() if secret is not None else secrets.token_urlsafe(32)
    )
    return env


def run_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve with `workers` processes (uvicorn's supervisor restarts one that dies). The
    schemas are made here first, once: a worker whose startup fails makes uvicorn stop them
    all, and N workers creating the same tables at the same instant only race."""
    import uvicorn

    os.environ.update(worker_environment(settings))
    prepare_schemas(settings)
    uvicorn.run(FACTORY, factory=True, host=host, port=port, workers=workers, log_config=None)


def prepare_schemas(settings: Settings) -> None:
    """Create the ledger's tables and apply ClickHouse migrations, then let go of both."""
    from tutorledger.infra.clickhouse import open_projection_store
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.projections.schema import migrate

    open_ledger(settings).close()
    store = open_projection_store(settings)
    try:
        migrate(store)
    finally:
        store.close()


def app_from_environment() -> FastAPI:
    """One worker's app, from the environment `run_workers` prepared."""
    from tutorledger.api.app import create_app
    from tutorledger.infra.logging import configure

    settings = Settings()
    configure(settings.log_level)
    return create_app(settings)
