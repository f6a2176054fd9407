"""The write path beside the raw library, in one run: events/s of `POST /v1/events` (batches
of 1000, over real HTTP to a served `tutorledger serve`) and of `import-sessions`, each
next to a raw batched eventsourcing append of the same events into a fresh store of the
same kind, measured just before it.

The raw append stores the events as they come (plaintext, no rules, no index); the ledger
also validates, applies the lifecycle rules, seals students' fields (AES-GCM), keeps keyed
idempotency digests, the event-id index and the hash chain. What sealing alone costs is
measured too (`sealing`), so the ratios can be read with and without it.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import orjson
from eventsourcing.application import Application

from tutorledger.bench.common import (
    BATCH,
    RawEvent,
    Stage,
    drop_database_at,
    free_port,
    in_fresh_process,
    raw_env,
    timed,
)
from tutorledger.domain import privacy
from tutorledger.domain.envelope import parse_envelope
from tutorledger.infra.eventstore.codec import canonical_json
from tutorledger.infra.eventstore.crypto import AesGcmCipher
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.keys import write_admin_keys_file
from tutorledger.infra.settings import Settings

if TYPE_CHECKING:
    from tutorledger.infra.importers.session_mapping import RowConverter

START_TIMEOUT = 120.0
TIME_ZONE = "America/New_York"
Batches = Sequence[Sequence[dict[str, Any]]]


def raw_append(batches: Batches, store_url: str) -> float:
    """Seconds for the library's own append of `batches`, one save per batch, measured in a
    process of its own (like the side it is compared with)."""
    return in_fresh_process(_raw_append, batches, store_url)


def _raw_append(batches: Batches, store_url: str) -> float:
    raw = Application[uuid.UUID](env=raw_env(store_url))
    try:
        return timed(lambda: [raw.save(*[RawEvent(envelope=e) for e in b]) for b in batches])
    finally:
        raw.close()


@contextmanager
def served(store_url: str, workdir: Path, tag: str) -> Iterator[tuple[int, str]]:
    """`tutorledger serve` on a free loopback port, writing to `store_url`; yields (port,
    key). Its stream is Kafka (an address nobody answers on: the write path never calls the
    broker), so no projector shares the process, as in production."""
    port, keys = free_port(), workdir / f"keys-{tag}.json"
    key = write_admin_keys_file(keys)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTORLEDGER_")}
    env.update(TUTORLEDGER_EVENT_STORE=store_url, TUTORLEDGER_API_KEYS_FILE=str(keys),
               TUTORLEDGER_STREAM="kafka://127.0.0.1:9", TUTORLEDGER_VAR_DIR=str(workdir),
               TUTORLEDGER_CLICKHOUSE=f"chdb://{workdir}/chdb-{tag}")  # fmt: skip
    command = "from tutorledger.api.cli.main import main; main()"
    with (workdir / f"serve-{tag}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", command, "serve", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
    try:
        _await_health(process, port)
        yield port, key
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _await_health(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"tutorledger serve exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"tutorledger serve not healthy within {START_TIMEOUT:.0f}s")
        time.sleep(0.2)


def post_batches(port: int, key: str, bodies: list[bytes]) -> tuple[float, dict[str, int]]:
    """Seconds to POST every body on one keep-alive connection; counts of result statuses."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    answers: list[bytes] = []

    def post_all() -> None:
        for body in bodies:
            conn.request("POST", "/v1/events", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"POST /v1/events answered {response.status}: {answer[:300]!r}")
            answers.append(answer)

    seconds = timed(post_all)
    conn.close()
    counts: dict[str, int] = {}
    for answer in answers:
        for result in orjson.loads(answer)["results"]:
            counts[result["status"]] = counts.get(result["status"], 0) + 1
    return seconds, counts


def bench_post(events: list[dict[str, Any]], store_url: str, raw_url: str, workdir: Path,
               label: str) -> Stage:  # fmt: skip
    """POST /v1/events over HTTP in batches of 1000 vs the raw append of the same batches."""
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    baseline = raw_append(batches, raw_url)
    bodies = [orjson.dumps({"events": b}) for b in batches]
    with served(store_url, workdir, f"post-{label.lower()}") as (port, key):
        seconds, counts = post_batches(port, key, bodies)
    return Stage(f"POST /v1/events ({label}, HTTP)", len(events), seconds,
                 "eventsourcing appends, 1000 per save", baseline, extra=counts)  # fmt: skip


def bench_import(events: list[dict[str, Any]], store_url: str, raw_url: str, workdir: Path,
                 label: str) -> Stage:  # fmt: skip
    """`import-sessions` (its engine, in a process of its own, as the CLI runs it) of the
    district as a vendor report vs the raw append of the events the importer records, in
    the importer's batches."""
    from tutorledger.bench.vendor import write_report
    from tutorledger.infra.importers.session_reader import batches

    source = workdir / f"vendor-{label.lower()}.csv"
    write_report(source, events, TIME_ZONE)
    district = f"imported-{label.lower()}"
    baseline = raw_append([b.events for b in batches(source, _converter(district))], raw_url)
    report_path = workdir / f"import-{label.lower()}.json"
    seconds, report = in_fresh_process(_import, source, district, store_url, report_path)
    counts = report["events"]
    return Stage(f"import-sessions ({label})", counts["accepted"], seconds,
                 "eventsourcing appends, importer's batches", baseline,
                 extra={"rows": report["rows"], **counts})  # fmt: skip


def _converter(district: str) -> RowConverter:
    from tutorledger.infra.importers.session_mapping import (
        RowConverter,
        load_mapping,
        shipped_mapping,
    )

    shipped = shipped_mapping("tutorcom")
    assert shipped is not None, "the Tutor.com-style mapping ships with the package"
    return RowConverter(load_mapping(shipped), district, TIME_ZONE)


def _import(source: Path, district: str, store_url: str, report: Path) -> tuple[float, Any]:
    """Seconds and report of one import of `source` into a fresh ledger."""
    from tutorledger.infra.importers.sessions import SessionImport

    ledger = open_ledger(Settings(event_store=store_url))
    try:
        job = SessionImport(ledger, source, _converter(district), report)
        reports: list[dict[str, Any]] = []
        return timed(lambda: reports.append(job.run())), reports[0]
    finally:
        ledger.close()


def bench_sealing(events: list[dict[str, Any]]) -> Stage:
    """What sealed storage adds per event: AES-GCM of the personal fields and the keyed
    idempotency digest (HMAC-SHA256), under one student key per 12 events."""
    cipher = AesGcmCipher()
    canonical = [parse_envelope(e).canonical() for e in events]
    keys = [privacy.StudentKey("d", cipher.new_token(), cipher.new_key()) for _ in events[::12]]

    def seal_all() -> None:
        for i, env in enumerate(canonical):
            key = keys[i // 12]
            privacy.digest(key, env, cipher, canonical_json)
            privacy.seal(env, key, cipher, canonical_json)

    return Stage("sealing (AES-GCM + HMAC digest)", len(events), timed(seal_all))


class FreshStores:
    """Empty stores of one kind on demand: SQLite files, or PostgreSQL databases created
    beside the given one (dropped when the run ends)."""

    def __init__(self, stack: ExitStack, workdir: Path, postgres: str | None = None) -> None:
        self.stack, self.workdir, self.postgres, self.made = stack, workdir, postgres, 0

    def __call__(self) -> str:
        self.made += 1
        if self.postgres is None:
            return f"sqlite:///{self.workdir}/write-path-{self.made}.db"
        import psycopg
        from psycopg import sql

        parsed = urlparse(self.postgres)
        name = f"{parsed.path.lstrip('/')[:40]}_wp{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.postgres, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.stack.callback(self._drop, name)
        return parsed._replace(path=f"/{name}").geturl()

    def _drop(self, name: str) -> None:
        assert self.postgres is not None
        drop_database_at(self.postgres, name)


def write_path_stages(events: list[dict[str, Any]], workdir: Path, sqlite_url: str,
                      postgres: str | None) -> list[Stage]:  # fmt: skip
    """The write-path stages of `tutorledger bench`. The POST stage writes `sqlite_url` and
    `postgres` themselves (later stages read those ledgers); everything else writes stores
    of its own."""
    stages: list[Stage] = []
    targets: list[tuple[str, str, str | None]] = [("SQLite", sqlite_url, None)]
    if postgres:
        targets.append(("PostgreSQL", postgres, postgres))
    with ExitStack() as stack:
        for label, url, pg in targets:
            fresh: Callable[[], str] = FreshStores(stack, workdir, pg)
            stages.append(bench_post(events, url, fresh(), workdir, label))
            stages.append(bench_import(events, fresh(), fresh(), workdir, label))
    stages.append(bench_sealing(events))
    return stages
