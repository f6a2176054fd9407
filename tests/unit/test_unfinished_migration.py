"""A target `migrate-ledger` has not finished filling is refused at startup by everything that
would read it as a whole ledger: the relay (class and command), the embedded follower, the
Kafka projector's command, `rebuild` and `serve` (before uvicorn starts). Same typed error
as the API (`migration_incomplete`), a message that says to run `migrate-ledger` again,
exit 2, nothing sent; once the migration is finished, the same store is accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from migration_data import interrupted, plaintext_ledger, run
from typer.testing import CliRunner

from tutorledger.api.cli.main import app
from tutorledger.consumers.continuity import refuse_unfinished_store
from tutorledger.consumers.projector import LedgerFollower
from tutorledger.consumers.relay import Relay
from tutorledger.domain.errors import MigrationIncomplete
from tutorledger.infra.clickhouse import open_projection_store
from tutorledger.infra.eventstore.legacy import open_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.schema import migrate

UNREACHABLE_KAFKA = "kafka://127.0.0.1:9"  # discard port: any attempt to use it fails


class RecordingProducer:
    """Records what a relay would send; the refused relay must send nothing."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def partitions_for(self, topic: str) -> set[int]:
        self.sent.append(("partitions_for", topic))
        return {0, 1}

    def send(self, *args: Any, **kwargs: Any) -> Any:
        self.sent.append((args, kwargs))
        raise AssertionError("a refused relay produced a message")


@pytest.fixture
def half(tmp_path: Path) -> tuple[str, str]:
    """(source, target): the target's migration stopped after its second page."""
    source, target = f"sqlite:///{tmp_path}/old.db", f"sqlite:///{tmp_path}/new.db"
    plaintext_ledger(source, students=20)
    interrupted(source, target, page=40, after_pages=2)
    return source, target


def test_relay_and_follower_refuse_a_half_migrated_ledger_until_it_is_finished(
    half: tuple[str, str], tmp_path: Path
) -> None:
    source, target = half
    ledger = open_store(target)
    store = open_projection_store(Settings(clickhouse=f"chdb://{tmp_path}/ch"))
    try:
        producer = RecordingProducer()
        with pytest.raises(MigrationIncomplete, match="migrate-ledger") as caught:
            Relay(ledger, producer, "events", ledger.factory.tracking_recorder())
        assert caught.value.code == "migration_incomplete"
        assert producer.sent == []
        with pytest.raises(MigrationIncomplete, match="migrate-ledger"):
            LedgerFollower(ledger, store)
        with pytest.raises(MigrationIncomplete):
            refuse_unfinished_store(target)
    finally:
        ledger.close()
    run(source, target, page=40)  # finished: the refusal is lifted, nothing else needed
    ledger = open_store(target)
    try:
        migrate(store)
        follower = LedgerFollower(ledger, store)
        assert follower.catch_up() == ledger.recorder.max_notification_id()
        relay = Relay(ledger, RecordingProducer(), "events", ledger.factory.tracking_recorder())
        assert relay.position == 0
        refuse_unfinished_store(target)
    finally:
        ledger.close()
        store.close()


def test_a_missing_sqlite_store_is_no_reason_to_refuse(tmp_path: Path) -> None:
    refuse_unfinished_store(f"sqlite:///{tmp_path}/none.db")
    assert not (tmp_path / "none.db").exists(), "the check created a ledger file"


@pytest.mark.parametrize("command", ["relay", "project", "serve", "rebuild"])
def test_the_commands_refuse_a_half_migrated_ledger_before_contacting_kafka(
    half: tuple[str, str], tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    def no_server(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a server was started on a half-migrated ledger")

    monkeypatch.setattr(uvicorn, "run", no_server)
    _, target = half
    env = {
        "TUTORLEDGER_STREAM": UNREACHABLE_KAFKA,
        "TUTORLEDGER_CLICKHOUSE": f"chdb://{tmp_path}/ch",
        "TUTORLEDGER_VAR_DIR": str(tmp_path / "var"),
    }
    result = CliRunner().invoke(app, [command, "--event-store", target], env=env)
    assert result.exit_code == 2, result.output
    assert "migration_incomplete" in result.output
    assert "migrate-ledger" in result.output
    assert not (tmp_path / "ch").exists(), "ClickHouse was opened before the refusal"
