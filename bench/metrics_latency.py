"""Dashboard query latency: p50/p95 of every metric over HTTP, as a dashboard asks.

A district of `--size` events is streamed (bench.stream_district: five school years at
10 M) through the projectors' own writer into chdb or a ClickHouse server, then
`tutorledger serve` is started on it and every metric is asked for under six filters
(whole range, one school, one subject, one grade, one month, `as_of_position` at the middle).
Beside each filter: floors from the same run, a `count()` of the read-model rows that filter
selects and an HTTP round trip to /healthz. The serve process's RSS is reported too.

    python -m tutorledger.bench.metrics_latency --size 1000000 [--clickhouse URL] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tutorledger.bench.common import free_port
from tutorledger.bench.stream_district import StreamSpec, spec_for, stream
from tutorledger.consumers.kafka_projector import WATERMARK_COLUMNS
from tutorledger.domain.envelope import parse_envelope
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.filters import Filters, facts_where, filtered_sessions_sql
from tutorledger.projections.read_models import current_tables
from tutorledger.projections.rows import event_row
from tutorledger.projections.schema import migrate
from tutorledger.projections.writer import ReadModelWriter, RequestCache

KEY = "bench-metrics-admin-key-000000"
HTTP_METRICS = (
    "participation", "demand", "wait-times", "satisfaction", "timing", "engagement", "dosage",
    "dosage-standard",
)  # fmt: skip
ALERTS = {
    "alerts": ("/v1/alerts", {}),
    "alerts/students": ("/v1/alerts/students", {"X-Purpose": "latency benchmark"}),
}
RSS_FIELDS = {"rss": "VmRSS", "peak": "VmHWM"}


def ledger_rows(events: Iterable[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    """Rows as the projector writes them: published events (a random token per student, no
    free text), duplicates dropped, numbered."""
    seen: set[str] = set()
    tokens: dict[str, str] = {}
    position = 0
    for raw in events:
        if raw["event_id"] in seen:
            continue
        seen.add(raw["event_id"])
        position += 1
        yield event_row(position, published(parse_envelope(raw).canonical(), tokens))


def published(event: dict[str, Any], tokens: dict[str, str]) -> dict[str, Any]:
    """What the relay would publish for `event`: the student's token in place of the id."""
    payload = {k: v for k, v in event["payload"].items() if k not in ("topic", "comment")}
    student = payload.pop("student_id", None)
    if student is not None:
        payload["student_token"] = tokens.setdefault(student, secrets.token_urlsafe(18))
    return {**event, "payload": payload}


def load(store: ProjectionStore, events: Iterable[dict[str, Any]], block: int = 200_000) -> int:
    """Project valid events in blocks at positions 1, 2, … through the projectors' writer
    (raw rows and read models); returns the last position."""
    migrate(store)
    writer = ReadModelWriter(store, RequestCache(size=1_000_000))
    rows: list[tuple[Any, ...]] = []
    last = 0
    for row in ledger_rows(events):
        rows.append(row)
        last = row[0]
        if len(rows) >= block:
            writer.write(rows)
            rows = []
    writer.write(rows)
    return last


def load_stream(store: ProjectionStore, events: Iterable[dict[str, Any]], block: int) -> int:
    """Project canonical events at positions 1, 2, … in blocks; memory holds one block."""
    migrate(store)
    writer = ReadModelWriter(store, RequestCache(size=300_000))
    tables = current_tables(store)
    tokens: dict[str, str] = {}
    rows: list[tuple[Any, ...]] = []
    position = 0
    for event in events:
        position += 1
        rows.append(event_row(position, published(event, tokens)))
        if len(rows) >= block:
            writer.write(rows, tables=tables, dedupe=False)
            rows = []
    writer.write(rows, tables=tables, dedupe=False)
    # Kafka-mode serving answers up to the relay's watermark: say everything has arrived.
    now = datetime.now(UTC).replace(microsecond=0)
    store.insert("stream_watermarks", WATERMARK_COLUMNS, [(0, 1, position, now)])
    return position


def percentile(values: list[float], percent: int) -> float:
    """Nearest rank, as the metrics themselves define percentiles."""
    ordered = sorted(values)
    return ordered[max(1, (percent * len(ordered) + 99) // 100) - 1]


def scenarios(spec: StreamSpec, head: int) -> dict[str, dict[str, Any]]:
    month = spec.start + timedelta(days=60)
    return {
        "whole range": {},
        "one school": {"school_id": "sch-03"},
        "one subject": {"subject": "geometry"},
        "one grade": {"grade": 7},
        "one month": {"from": month.isoformat(), "to": (month + timedelta(days=29)).isoformat()},
        "as_of middle": {"as_of_position": head // 2},
    }


def floor_counts(store: ProjectionStore, spec: StreamSpec, head: int, repeats: int) -> Any:
    """Per scenario, timed in the same run: `count()` of the read-model rows it selects (the
    floor), the same count read with FINAL as the metrics read the facts, and, for
    comparison, the count of the raw-event fold the metrics used to run."""
    facts = current_tables(store).facts
    out: dict[str, Any] = {}
    for name, query in scenarios(spec, head).items():
        filters = Filters(
            spec.district_id,
            int(query.get("as_of_position", head)),
            spec.tz,
            school_id=query.get("school_id"),
            subject=query.get("subject"),
            grade=query.get("grade"),
            date_from=date.fromisoformat(query["from"]) if "from" in query else None,
            date_to=date.fromisoformat(query["to"]) if "to" in query else None,
        )
        where = facts_where(filters, (0, 1, 2, 3, 4))
        sql = f"SELECT count() FROM {facts} WHERE {where}"
        out[name] = timed_ms(partial(store.execute, sql, filters.params()), repeats)
        # The same count as the metrics read the facts (FINAL: copies collapsed), same data.
        final = f"SELECT count() FROM {facts} FINAL WHERE {where}"
        out[name]["final"] = timed_ms(partial(store.execute, final, filters.params()), repeats)
        fold = f"SELECT count() FROM ({filtered_sessions_sql()})"
        out[name]["raw_fold"] = timed_ms(partial(store.execute, fold, filters.params()), 3)
    return out


def timed_ms(work: Callable[[], Any], repeats: int) -> dict[str, float]:
    work()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(percentile(samples, 50), 1),
        "p95_ms": round(percentile(samples, 95), 1),
    }


def serve_env(workdir: Path, clickhouse: str, embedded: bool) -> dict[str, str]:
    """The environment `tutorledger` runs with on this bench's stores (serve, demo). No
    answers are kept: a bench times computing figures, and repeats would be served from
    memory (docs/architecture.md, "Scale")."""
    return {
        **os.environ,
        "TUTORLEDGER_EVENT_STORE": f"sqlite:///{workdir}/ledger.db",
        "TUTORLEDGER_CLICKHOUSE": clickhouse,
        "TUTORLEDGER_STREAM": "embedded" if embedded else "kafka://127.0.0.1:9",
        "TUTORLEDGER_API_KEYS_FILE": str(workdir / "keys.json"),
        "TUTORLEDGER_VAR_DIR": str(workdir / "var"),
        "TUTORLEDGER_LOG_LEVEL": "WARNING",
        "TUTORLEDGER_ANSWER_CACHE_ROWS": "0",
    }


def serve(
    workdir: Path,
    clickhouse: str,
    embedded: bool,
    keys: list[dict[str, Any]] | None = None,
    settings: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """`tutorledger serve` on the loaded projections; (process, base URL) once it answers.
    Keys: an admin key (KEY) unless given; `settings`: environment over serve_env's."""
    specs = keys or [{"key": KEY, "role": "admin", "districts": ["*"]}]
    (workdir / "keys.json").write_text(json.dumps(specs))
    port = free_port()
    env = serve_env(workdir, clickhouse, embedded) | (settings or {})
    cmd = [sys.executable, "-c", "from tutorledger.api.cli.main import main; main()", "serve"]
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("tutorledger serve did not come up")


def rss_mib(pid: int) -> dict[str, float]:
    """Current and peak resident memory of a process, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {k: round(int(fields[f].split()[0]) / 1024, 1) for k, f in RSS_FIELDS.items()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process (all its threads: chdb's too) has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_cpu(work: Callable[[], Any], repeats: int, pid: int | None) -> dict[str, float]:
    """`timed_ms` plus the serve process's CPU per request: on a shared machine wall times
    carry other processes' load, CPU time does not."""
    before = cpu_seconds(pid) if pid else 0.0
    out = timed_ms(work, repeats)
    if pid:
        out["cpu_ms"] = round((cpu_seconds(pid) - before) * 1000 / (repeats + 1), 1)
    return out


def time_http(
    base: str, spec: StreamSpec, head: int, repeats: int, pid: int | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}"}
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    report: dict[str, Any] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        report["floor: GET /healthz"] = timed_ms(lambda: client.get("/healthz"), repeats)
        for name, query in scenarios(spec, head).items():
            params = {"district_id": spec.district_id, **query}
            report[name] = {
                metric: timed_cpu(
                    partial(_get, client, f"/v1/metrics/{metric}", params), repeats, pid
                )
                for metric in HTTP_METRICS
            }
        for name, query in (
            ("alerts, latest", {}),
            ("alerts, as_of middle", {"as_of_position": head // 2}),
        ):
            params = {"district_id": spec.district_id, **query}
            report[name] = {
                kind: timed_ms(partial(_get, client, path, params, extra), repeats)
                for kind, (path, extra) in ALERTS.items()
            }
    return report


def _get(
    client: httpx.Client, path: str, params: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    client.get(path, params=params, headers=headers).raise_for_status()


def run(size: int, repeats: int = 20, clickhouse: str | None = None) -> dict[str, Any]:
    """Generate and load, time the floors, then serve and time every metric over HTTP."""
    spec = spec_for(size)
    with tempfile.TemporaryDirectory(prefix="tl-metrics-") as tmp:
        url = clickhouse or f"chdb://{tmp}/chdb?database=bench_metrics"
        store = open_projection_store(Settings(clickhouse=url))
        started = time.perf_counter()
        head = load_stream(store, stream(spec), block=100_000)
        loaded = time.perf_counter() - started
        rows = int(store.execute(f"SELECT count() FROM {current_tables(store).facts}")[0][0])
        floors = floor_counts(store, spec, head, repeats)
        store.close()  # chdb: the serve process must own the data dir
        proc, base = serve(Path(tmp), url, embedded=clickhouse is None)
        try:
            report = {
                "backend": "chdb" if clickhouse is None else "clickhouse-server",
                "events": head,
                "read_model_rows": rows,
                "years": spec.days // 180,
                "students": spec.students,
                "load_seconds": round(loaded, 1),
                "repeats": repeats,
                "floor_count": floors,
                "http": time_http(base, spec, head, repeats, proc.pid),
                "serve_rss_mib": rss_mib(proc.pid),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return report


Bench = Callable[[int, int, str | None], dict[str, Any]]


def latency_main(description: str | None, bench: Bench) -> None:
    """The latency benches' shared command line: --size, --repeats, --clickhouse; JSON out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--clickhouse", default=None, help="clickhouse://… (default: chdb)")
    args = parser.parse_args()
    sys.stdout.write(json.dumps(bench(args.size, args.repeats, args.clickhouse), indent=2) + "\n")


def main() -> None:
    latency_main(__doc__, run)


if __name__ == "__main__":
    main()
