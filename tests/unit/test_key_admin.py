"""Key management: `keys add` stores only a SHA-256 and prints the key once, `revoke` marks
the entry, the file is replaced whole (never seen half-written) and two writers at once lose
nothing; a bad file is refused in one line and left as it was. Last use is throttled per
process and only ever moves forward."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tutorledger.api.cli.main import app as cli
from tutorledger.infra.eventstore.key_usage import KeyUsage, ThrottledUse
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.key_admin import KeyNotFound, KeysFile
from tutorledger.infra.keys import KeysFileError, KeyStore, key_digest, read_specs
from tutorledger.infra.settings import Settings


def test_add_stores_only_the_digest_and_the_key_authenticates(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    later = datetime.now(UTC) + timedelta(days=3)
    key, row = KeysFile(path).add("emitter", ["d1", "d2"], "acme", later)
    text = path.read_text()
    assert key not in text and key_digest(key) in text
    assert path.stat().st_mode & 0o777 == 0o600
    (spec,) = read_specs(path)
    assert (spec.role, spec.districts, spec.provider, spec.key) == ("emitter", ["d1", "d2"],
                                                                   "acme", None)  # fmt: skip
    principal = KeyStore.from_file(path).authenticate(key)
    assert principal is not None and principal.key_id == row.key_id == key_digest(key)[:16]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json", "keys.json.lock"]  # no tmp


def test_revoke_marks_the_entry_and_the_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys = KeysFile(path)
    goes, row = keys.add("dashboard", ["d1"])
    stays, _ = keys.add("dashboard", ["d1"])
    store = KeyStore.from_file(path, recheck=0.0)
    assert store.authenticate(goes) is not None
    assert keys.revoke(row.key_id) == (keys.rows()[0], True)
    assert keys.revoke(row.key_id[:8])[1] is False  # again, by a prefix: already revoked
    assert store.authenticate(goes) is None and store.authenticate(stays) is not None
    assert [r.status(datetime.now(UTC)) for r in keys.rows()] == ["revoked", "active"]
    with pytest.raises(KeyNotFound):
        keys.revoke("f" * 16 if not row.key_id.startswith("f") else "e" * 16)
    with pytest.raises(KeyNotFound):
        keys.revoke("abc")  # too short to name one key safely


def test_a_bad_file_is_refused_in_one_line_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    bad = json.dumps([{"key_sha256": "0" * 64, "role": "admin", "districts": ["*"], "x": 1}])
    path.write_text(bad)
    with pytest.raises(KeysFileError, match="entry 1, an unknown field"):
        KeysFile(path).add("admin", ["*"])
    assert path.read_text() == bad


def test_two_writers_at_once_lose_no_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    added: list[str] = []

    def add_some() -> None:
        for _ in range(15):
            added.append(KeysFile(path).add("dashboard", ["d1"])[1].key_id)

    threads = [threading.Thread(target=add_some) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.key_id for r in KeysFile(path).rows()) == sorted(added)
    assert len(added) == 45


def test_a_reader_never_meets_a_half_written_file(tmp_path: Path) -> None:
    """The file is renamed into place: every read while writes go on parses whole."""
    path = tmp_path / "keys.json"
    KeysFile(path).add("admin", ["*"])
    done = threading.Event()
    seen: list[int] = []

    def read_all_the_time() -> None:
        while not done.is_set():
            seen.append(len(read_specs(path)))  # KeysFileError here would fail the test

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        for _ in range(30):
            KeysFile(path).add("dashboard", ["d1"])
    finally:
        done.set()
        reader.join()
    assert seen and seen == sorted(seen) and max(seen) <= 31


def test_last_use_is_throttled_and_only_moves_forward(tmp_path: Path) -> None:
    ledger = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/l.db"))
    try:
        usage = KeyUsage(ledger.recorder)
        now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
        usage.record("a" * 16, now)
        usage.record("a" * 16, now - timedelta(hours=1))  # a slower worker's older note
        assert usage.last_used() == {"a" * 16: now}
        calls: list[str] = []
        clock = [0.0]
        throttled = ThrottledUse(lambda k, _: calls.append(k), every=60.0, clock=lambda: clock[0])
        for _ in range(5):
            throttled.touch("k1")
        throttled.touch("k2")
        clock[0] = 61.0
        throttled.touch("k1")
        assert calls == ["k1", "k2", "k1"]
    finally:
        ledger.close()


def test_a_failed_usage_write_never_fails_authentication(tmp_path: Path) -> None:
    def broken(key_id: str, at: datetime) -> None:
        raise OSError("store down")

    path = tmp_path / "keys.json"
    key, _ = KeysFile(path).add("dashboard", ["d1"])
    store = KeyStore.from_file(path)
    store.on_use = ThrottledUse(broken).touch
    assert store.authenticate(key) is not None


def run(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(cli, ["keys", *args], env=env)


def test_cli_prints_the_key_alone_on_stdout_and_lists_without_it(tmp_path: Path) -> None:
    env = {"TUTORLEDGER_API_KEYS_FILE": str(tmp_path / "k.json"),
           "TUTORLEDGER_EVENT_STORE": f"sqlite:///{tmp_path}/l.db"}  # fmt: skip
    added = run("add", "--role", "auditor", "--districts", "d1,d2", "--districts", "d3", env=env)
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert key.startswith("tl_") and "\n" not in key
    listing = run("list", "--format", "json", env=env)
    assert listing.exit_code == 0 and key not in listing.output
    assert "no event store at" in listing.stderr and not (tmp_path / "l.db").exists()
    (row,) = json.loads(listing.stdout)
    assert (row["districts"], row["last_used"], row["status"]) == (["d1", "d2", "d3"], None,
                                                                   "active")  # fmt: skip
    assert run("add", "--role", "boss", "--districts", "d1", env=env).exit_code == 2
    assert run("add", "--role", "admin", "--districts", "d 1", env=env).exit_code == 2
    assert run("add", "--role", "emitter", "--districts", "d1", "--provider", "a b",
               env=env).exit_code == 2  # fmt: skip
    past = run("add", "--role", "admin", "--districts", "d1", "--expires", "2001-01-01", env=env)
    assert past.exit_code == 2 and len(json.loads(run("list", "--format", "json",
                                                      env=env).stdout)) == 1  # fmt: skip


def test_cli_finds_the_keys_file_a_bare_serve_keeps_in_var(tmp_path: Path) -> None:
    env = {"TUTORLEDGER_VAR_DIR": str(tmp_path / "var"),
           "TUTORLEDGER_EVENT_STORE": f"sqlite:///{tmp_path}/l.db"}  # fmt: skip
    assert run("list", env=env).exit_code == 2  # none configured, none in var/
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "api-keys.json").write_text("[]")
    added = run("add", "--role", "dashboard", "--districts", "d1", env=env)
    assert added.exit_code == 0, added.output
    assert len(read_specs(tmp_path / "var" / "api-keys.json")) == 1
