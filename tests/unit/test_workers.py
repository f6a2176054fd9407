"""`serve --workers N`: what each worker process is handed, and the refusal in embedded mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from tutorledger.api.cli.main import app
from tutorledger.api.workers import (
    WorkersNeedClickHouseServer,
    WorkersNeedKafka,
    worker_environment,
)
from tutorledger.infra.settings import Settings


def test_workers_get_the_resolved_settings_and_one_session_secret(tmp_path: Path) -> None:
    settings = Settings(
        event_store="postgresql://u:p@127.0.0.1:5432/ledger",
        stream="kafka://127.0.0.1:9092",
        clickhouse="clickhouse://default@127.0.0.1:9000/db",
        api_keys_file=tmp_path / "keys.json",
    )
    env = worker_environment(settings)
    assert env["TUTORLEDGER_EVENT_STORE"] == settings.event_store
    assert env["TUTORLEDGER_CLICKHOUSE"] == settings.clickhouse
    assert env["TUTORLEDGER_API_KEYS_FILE"] == str(tmp_path / "keys.json")
    assert len(env["TUTORLEDGER_SESSION_SECRET"]) >= 32  # one random secret for all workers
    fixed = settings.model_copy(update={"session_secret": SecretStr("s" * 40)})
    assert worker_environment(fixed)["TUTORLEDGER_SESSION_SECRET"] == "s" * 40
    rebuilt = Settings(**{k.removeprefix("TUTORLEDGER_").lower(): v for k, v in env.items()})
    assert (rebuilt.event_store, rebuilt.stream, rebuilt.clickhouse) == (
        settings.event_store, settings.stream, settings.clickhouse,
    )  # fmt: skip


def test_embedded_mode_refuses_workers(tmp_path: Path) -> None:
    with pytest.raises(WorkersNeedKafka):
        worker_environment(Settings(stream="embedded"))
    env = {"TUTORLEDGER_VAR_DIR": str(tmp_path), "TUTORLEDGER_STREAM": "embedded",
           "TUTORLEDGER_EVENT_STORE": f"sqlite:///{tmp_path}/l.db",
           "TUTORLEDGER_CLICKHOUSE": f"chdb://{tmp_path}/p"}  # fmt: skip
    result = CliRunner().invoke(app, ["serve", "--workers", "2"], env=env)
    assert result.exit_code == 2 and "workers_need_kafka" in result.output


def test_chdb_projections_refuse_workers(tmp_path: Path) -> None:
    """Workers would each open the chdb data dir; all but the first fail at startup and
    uvicorn then stops the lot, mid-traffic. Refused before any of them starts."""
    kafka = {"stream": "kafka://127.0.0.1:9092"}
    with pytest.raises(WorkersNeedClickHouseServer):
        worker_environment(Settings(**kafka, clickhouse=f"chdb://{tmp_path}/p"))
    env = {"TUTORLEDGER_VAR_DIR": str(tmp_path), "TUTORLEDGER_STREAM": "kafka://127.0.0.1:9",
           "TUTORLEDGER_EVENT_STORE": f"sqlite:///{tmp_path}/l.db",
           "TUTORLEDGER_CLICKHOUSE": f"chdb://{tmp_path}/p"}  # fmt: skip
    result = CliRunner().invoke(app, ["serve", "--workers", "2"], env=env)
    assert result.exit_code == 2 and "workers_need_clickhouse_server" in result.output
    assert not (tmp_path / "p").exists()  # refused before anything opened the store
