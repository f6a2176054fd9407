"""migrate-ledger on SQLite files: a plaintext-format ledger (written row by row as the old
versions wrote it) copied into a sealed one. Every event comes back decrypted, in order, with
its id and timestamps; nothing personal is left readable in the new file; the new chain
verifies and its first entries name the old heads; the old file is not touched; a finished,
foreign or already-filled target is refused; an interrupted run resumes to the same ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from migration_data import (
    DISTRICTS,
    SECRETS,
    STUDENT,
    decrypted,
    digest_of,
    files_of,
    interrupted,
    plaintext_ledger,
    run,
    stored,
)
from reference_metrics import fold

from tutorledger.api.runtime import Runtime
from tutorledger.consumers import continuity
from tutorledger.domain.errors import (
    MigrationIncomplete,
    SourceChainBroken,
    SourceEmpty,
    SourceSealed,
    TargetNotEmpty,
)
from tutorledger.domain.migration import MIGRATION_EVENT_TYPE
from tutorledger.infra.eventstore.audit import verify_chain
from tutorledger.infra.eventstore.legacy import open_store, sql_rows
from tutorledger.infra.settings import Settings


@pytest.fixture
def old(tmp_path: Path) -> tuple[str, list[dict[str, Any]]]:
    url = f"sqlite:///{tmp_path}/old.db"
    return url, plaintext_ledger(url)


def test_migrated_ledger_holds_every_event_sealed_in_order_and_continues_the_old_chain(
    old: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    source, accepted = old
    before = digest_of(source)
    target = f"sqlite:///{tmp_path}/new.db"
    report = run(source, target, page=97)
    assert report.migrated == report.total == len(accepted) + 1  # + the school update
    assert digest_of(source) == before, "the old ledger was changed"
    events = decrypted(target)
    assert [e["type"] for e in events[:2]] == [MIGRATION_EVENT_TYPE] * 2
    migrated = [e for e in events[2:] if e["type"].startswith("session.")]
    assert migrated == accepted  # ids, order, timestamps, every field
    for district in DISTRICTS:
        assert fold(migrated, district) == fold(accepted, district)
    text = "".join(p.read_bytes().decode("latin-1") for p in files_of(target))
    assert not [s for s in SECRETS if s in text], "plaintext left in the new ledger's files"
    assert all("student_id" not in e["payload"] for e in stored(target))
    new = open_store(target, read_only=True)
    old_ledger = open_store(source, read_only=True)
    try:
        assert verify_chain(new.recorder, new.mapper).ok
        assert not continuity.unfinished(new)
        old_heads = verify_chain(old_ledger.recorder, old_ledger.mapper).heads
        links = continuity.links(new)
        assert {d: link["previous_head"] for d, link in links.items()} == {
            d: h for d, (_, h) in old_heads.items()
        }
        ok, problem, checked = continuity.check(old_ledger, new)
        assert ok and problem is None and len(checked) == len(DISTRICTS)
    finally:
        new.close()
        old_ledger.close()


def test_a_filled_or_finished_target_is_refused_and_left_alone(
    old: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    source, _ = old
    target = f"sqlite:///{tmp_path}/new.db"
    run(source, target)
    after = digest_of(target)
    with pytest.raises(TargetNotEmpty, match="finished migration") as caught:
        run(source, target)
    assert caught.value.code == "target_not_empty"
    # A ledger that is not a migration at all (here: the old ledger itself as a target).
    other = f"sqlite:///{tmp_path}/other.db"
    plaintext_ledger(other, students=10)
    untouched = digest_of(other)
    with pytest.raises(TargetNotEmpty, match="already holds a ledger"):
        run(source, other)
    assert digest_of(other) == untouched, "a refused target was written to"
    with pytest.raises(TargetNotEmpty):  # the old ledger itself as the target
        run(source, source)
    assert digest_of(target) == after


def test_sealed_empty_or_missing_sources_are_refused(
    old: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    source, _ = old
    sealed = f"sqlite:///{tmp_path}/new.db"
    run(source, sealed)
    with pytest.raises(SourceSealed) as caught:
        run(sealed, f"sqlite:///{tmp_path}/again.db")
    assert caught.value.code == "source_already_sealed"
    empty = f"sqlite:///{tmp_path}/empty.db"
    open_store(empty).close()
    with pytest.raises(SourceEmpty):
        run(empty, f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(SourceEmpty):
        run(f"sqlite:///{tmp_path}/missing.db", f"sqlite:///{tmp_path}/y.db")
    assert not (tmp_path / "missing.db").exists()


def test_an_interrupted_migration_is_unfinished_until_a_rerun_completes_it(
    old: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    source, accepted = old
    target = f"sqlite:///{tmp_path}/new.db"
    interrupted(source, target, page=50, after_pages=3)
    half = open_store(target, read_only=True)
    try:
        assert continuity.unfinished(half), "a half-filled target must not look finished"
        assert verify_chain(half.recorder, half.mapper).ok
    finally:
        half.close()
    with pytest.raises(MigrationIncomplete):  # the API will not serve it either
        Runtime.build(Settings(event_store=target, clickhouse=f"chdb://{tmp_path}/ch"))
    report = run(source, target, page=50)
    assert report.resumed_after == 150
    assert report.migrated == report.total - 150
    clean = f"sqlite:///{tmp_path}/clean.db"
    run(source, clean, page=50)
    resumed, uninterrupted = decrypted(target), decrypted(clean)
    assert [e["event_id"] for e in resumed] == [e["event_id"] for e in uninterrupted]
    assert [e for e in resumed if e["type"].startswith("session.")] == accepted


def test_a_tampered_old_ledger_is_not_migrated(
    old: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    source, _ = old
    ledger = open_store(source)
    try:
        sql_rows(ledger, "UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), "
                 "'QX5522', 'QX5523') AS BLOB) WHERE CAST(state AS TEXT) LIKE '%QX5522%'",
                 write=True)  # fmt: skip
    finally:
        ledger.close()
    target = f"sqlite:///{tmp_path}/new.db"
    with pytest.raises(SourceChainBroken, match="position"):
        run(source, target)
    half = open_store(target, read_only=True)
    try:
        assert continuity.unfinished(half)
    finally:
        half.close()


def test_the_continuity_check_fails_when_the_old_ledger_moved_on(
    old: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    source, _ = old
    target = f"sqlite:///{tmp_path}/new.db"
    run(source, target)
    from tutorledger.bench.legacy_ledger import put_school

    put_school(source, DISTRICTS[1], "sch-late", {"4": 10})
    a, b = open_store(source, read_only=True), open_store(target, read_only=True)
    try:
        ok, _, links = continuity.check(a, b)
    finally:
        a.close()
        b.close()
    assert not ok
    assert [x.district_id for x in links if not x.ok] == [DISTRICTS[1]]


def test_the_migrated_ledger_keeps_the_write_paths_rules(
    old: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Resends are duplicates (keyed digests), a changed body conflicts, an old session can
    continue, and an erasure works on a migrated student."""
    source, accepted = old
    target = f"sqlite:///{tmp_path}/new.db"
    run(source, target)
    ledger = open_store(target)
    try:
        resent = ledger.record_events(accepted[:40])
        assert {o.status for o in resent} == {"duplicate"}
        changed = {**accepted[0], "payload": {**accepted[0]["payload"], "grade": 1}}
        (conflict,) = ledger.record_events([changed])
        assert conflict.error is not None and conflict.error.code == "event_id_conflict"
        key = ledger.index.find_student(DISTRICTS[0], STUDENT)
        assert key is not None
        ledger.erase(DISTRICTS[0], key.token, "parent_request")
        assert ledger.index.find_student(DISTRICTS[0], STUDENT) is None
        assert verify_chain(ledger.recorder, ledger.mapper).ok
        marked = [e for e in stored(target) if e.get("session_id") == "marked-0"]
        assert {o.erased for o in ledger.open_stored(marked)} >= {("student_id", "topic")}
    finally:
        ledger.close()


def test_a_postgresql_source_needs_an_explicit_target() -> None:
    from typer.testing import CliRunner

    from tutorledger.api.cli.main import app

    result = CliRunner().invoke(app, ["migrate-ledger", "--from", "postgresql://u@h/old"])
    assert result.exit_code == 2
    assert "--to" in result.output
