"""Migration as an operator runs it, with the installed `tutorledger`: `migrate-ledger` on a
plaintext-format SQLite ledger is killed with SIGKILL mid-way; `verify` then refuses the
half-filled target (migration_incomplete), and so do `relay` and `project` (exit 2, before
any Kafka is contacted, naming `migrate-ledger`); the same command again completes it; `verify`
passes and shows each district continuing the old head; `check-migration` proves it against
the old file, which is unchanged; a third run is refused (target_not_empty, exit 2). No
student id, topic or comment reaches the new file or the commands' output."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import installed
import pytest
from migration_data import DISTRICTS, SECRETS, digest_of, files_of, plaintext_ledger

pytestmark = pytest.mark.e2e


cli_env = installed.cli_env
run = installed.run_cli


def run_stream(command: str, store: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`relay` or `project` in Kafka mode on `store`; the broker's address is a closed port,
    so a command that got past the check would fail on Kafka instead (exit 1, KafkaError)."""
    env = {
        **cli_env(),
        "TUTORLEDGER_STREAM": "kafka://127.0.0.1:9",
        "TUTORLEDGER_CLICKHOUSE": f"chdb://{tmp_path}/ch",
        "TUTORLEDGER_VAR_DIR": str(tmp_path),
    }
    return subprocess.run([str(installed.cli()), command, "--event-store", store], env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


def target_events(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM ledger_index").fetchone()[0])
    except sqlite3.Error:  # tables not created yet
        return 0


def test_migrate_ledger_killed_then_rerun_verified_and_checked(tmp_path: Path) -> None:
    old = f"sqlite:///{tmp_path}/old.db"
    accepted = plaintext_ledger(old, students=600)
    before = digest_of(old)
    new_path = tmp_path / "old-sealed.db"  # the default target beside the source
    installed.kill_cli_midway(
        ["migrate-ledger", "--from", old, "--page-size", "50"],
        lambda: target_events(new_path) > 200,
        "a first pages migrated",
    )
    new = f"sqlite:///{new_path}"
    half = run("verify", "--event-store", new)
    assert half.returncode == 1 and "migration_incomplete" in half.stderr
    for command in ("relay", "project"):
        refused = run_stream(command, new, tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert "migration_incomplete" in refused.stderr and "migrate-ledger" in refused.stderr
        assert "Traceback" not in refused.stderr

    resumed = run("migrate-ledger", "--from", old, "--to", new)
    assert resumed.returncode == 0, resumed.stderr
    body = json.loads(resumed.stdout)
    assert body["events"] == len(accepted) + 1 and 0 < body["resumed_after"] < body["events"]
    assert "migrating ledger" in resumed.stderr and "ev/s" in resumed.stderr

    verified = run("verify", "--event-store", new)
    assert verified.returncode == 0, verified.stderr
    districts = json.loads(verified.stdout)["districts"]
    for district in DISTRICTS:
        link = districts[district]["continues"]
        assert link["previous_head"] == body["districts"][district]["previous_head"]
    assert "continues a migrated ledger" in verified.stderr

    checked = run("check-migration", "--old", old, "--new", new)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["ok"] is True

    again = run("migrate-ledger", "--from", old, "--to", new)
    assert again.returncode == 2 and "target_not_empty" in again.stderr
    sealed_again = run("migrate-ledger", "--from", new, "--to", f"sqlite:///{tmp_path}/x.db")
    assert sealed_again.returncode == 2 and "source_already_sealed" in sealed_again.stderr

    assert digest_of(old) == before, "the old ledger was changed"
    text = "".join(p.read_bytes().decode("latin-1") for p in files_of(new))
    outputs = [half, resumed, verified, checked, again, sealed_again]
    text += "".join(r.stdout + r.stderr for r in outputs)
    assert not [s for s in SECRETS if s in text]


def test_migrate_ledger_help_explains_the_options() -> None:
    shown = run("migrate-ledger", "--help")
    assert shown.returncode == 0
    for words in ("--from", "--to", "sealed", "resumes", "check-migration"):
        assert words in shown.stdout
