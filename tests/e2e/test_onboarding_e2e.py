"""Onboarding as an operator runs it, with the installed `tutorledger`: `import-roster` on a
generated bundle (bad rows: exit 1, nothing recorded), and `import-sessions` killed with
SIGKILL mid-import then run again, which must leave the ledger an uninterrupted import
leaves: the same events in the same order (on SQLite, the same chain head too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import installed
import pytest
from imports import chain_head, events_in_order, truth, vendor_csv
from rosters import generated_bundle
from waiting import wait_until

from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

pytestmark = pytest.mark.e2e
D = "kill-d"


cli_env = installed.cli_env
run = installed.run_cli


def live(pid: int) -> bool:
    """Whether `pid` runs (a zombie, which has exited, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_naming(path: Path) -> list[int]:
    """Live processes with `path` among their arguments (zombies have none)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not a process
            continue
        if str(path).encode() in args:
            found.append(int(proc.name))
    return found


def children_of(pids: list[int]) -> list[int]:
    """Live processes whose parent is one of `pids`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) in pids:
            found.append(int(proc.name))
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Two empty stores of one kind: one for a clean import, one for the killed import."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/clean.db", f"sqlite:///{tmp_path}/killed.db"
    return request.getfixturevalue("pg_dsn"), request.getfixturevalue("second_pg_dsn")


@pytest.fixture
def second_pg_dsn(pg_server: Any) -> Any:
    import uuid

    from devtools import services

    name = f"{services.TEST_DB_PREFIX}{uuid.uuid4().hex}"
    yield services.create_database(name, pg_server)
    services.drop_database(name, pg_server)


def test_import_sessions_killed_mid_import_then_resumed_gives_the_same_ledger(
    stores: tuple[str, str], tmp_path: Path
) -> None:
    clean_url, killed_url = stores
    source = vendor_csv(tmp_path / "sessions.csv", truth(D, students=3000, days=20))
    common = ("import-sessions", source, "--district", D, "--mapping", "tutorcom")
    clean = run(*common, "--event-store", clean_url, "--report", tmp_path / "clean.json")
    assert clean.returncode == 0, clean.stderr
    total = json.loads(clean.stdout)["events"]["accepted"]
    assert "importing sessions" in clean.stderr and "ev/s" in clean.stderr

    report = tmp_path / "killed.json"
    state = tmp_path / "killed.json.state"
    readers: list[int] = []

    def checkpointed_with_reader() -> bool:
        readers[:] = children_of(processes_naming(report))
        return bool(readers) and state.exists() and json.loads(state.read_text())["rows"] > 0

    killed = [*common, "--event-store", killed_url, "--report", report]
    installed.kill_cli_midway(killed, checkpointed_with_reader, "a checkpoint and the reader")
    # The source's reader process (and any helper multiprocessing started) ends with the
    # killed import, its pipe closing, instead of lingering as an orphan.
    wait_until(lambda: not any(live(pid) for pid in readers), "the import's reader to exit")
    assert not report.exists()
    done_before = json.loads(state.read_text())["accepted"]
    assert 0 < done_before < total

    resumed = run(*common, "--event-store", killed_url, "--report", report)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["runs"] == 2 and summary["events"]["rejected"] == 0
    assert summary["events"]["accepted"] + summary["events"]["duplicate"] == total
    assert json.loads(report.read_text())["events"] == summary["events"]
    assert not state.exists()

    again = run(*common, "--event-store", killed_url, "--report", tmp_path / "again.json")
    assert json.loads(again.stdout)["events"] == {"accepted": 0, "duplicate": total, "rejected": 0}

    ledgers = [open_ledger(Settings(event_store=url)) for url in (clean_url, killed_url)]
    try:
        clean_events, killed_events = (events_in_order(ledger, D) for ledger in ledgers)
        assert len(killed_events) == total and killed_events == clean_events
        heads = [chain_head(ledger, D) for ledger in ledgers]  # each chain verifies
        if clean_url.startswith("sqlite"):
            # PostgreSQL's sequence skips the positions a killed transaction had drawn, so
            # there the events (above) are equal but positions may differ. Hashes differ in
            # any case: each ledger draws its own student tokens, keys and nonces.
            assert heads[0][0] == heads[1][0]
    finally:
        for ledger in ledgers:
            ledger.close()


def test_import_roster_command(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/ledger.db"
    bundle = generated_bundle({"a": 26, "b": 13})
    good = run("import-roster", bundle.write_zip(tmp_path / "roster.zip"), "--district", "r-d",
               "--as-of", "2026-02-01", "--event-store", store)  # fmt: skip
    assert good.returncode == 0, good.stderr
    body = json.loads(good.stdout)
    assert [(s["school_id"], s["enrolled"], s["status"]) for s in body["schools"]] == [
        ("a", 26, "recorded"),
        ("b", 14, "recorded"),
    ]
    assert "in several schools" in good.stderr
    bundle.raw_lines["users.csv"] = ["broken,row"]
    bad = run("import-roster", bundle.write_dir(tmp_path / "dir"), "--district", "r-d",
              "--as-of", "2026-03-01", "--event-store", store)  # fmt: skip
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["error"]["code"] == "invalid_roster"
    assert f"users.csv:{len(bundle.users) + 2}" in bad.stderr
    ledger = open_ledger(Settings(event_store=store))
    try:
        school = ledger.get_school("r-d", "b")
        assert school is not None and len(school.history) == 1  # the bad run recorded nothing
    finally:
        ledger.close()
    for secret in bundle.personal_strings():
        assert secret not in good.stdout + good.stderr + bad.stdout + bad.stderr
