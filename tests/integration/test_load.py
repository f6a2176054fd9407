"""Load test: locust (headless, loopback, bounded) against the production shape.

`serve --workers 2` on PostgreSQL in Kafka mode, with the relay and the projector running
into a ClickHouse 18.16 server, takes emitters' batches and dashboards' metric reads at once
for TUTORLEDGER_LOAD_SECONDS (60). It reports what it measured (sustained events/s stored,
p50/p99 of POST /v1/events and of each metric read, the projection lag left at the end) and
asserts only correctness: no failed or rejected request, every event stored once, the chain
intact. Never a timing: this machine is shared. A 503 or a dropped connection is resent, as
docs/operations.md tells clients to, and reported (with the write races the API lost and how many
times uvicorn started a worker), so the check is that resends never store twice.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import live
import psycopg
import pytest
from builders import write_keys

SECONDS = int(os.environ.get("TUTORLEDGER_LOAD_SECONDS", "60"))
USERS = 8  # 3 emitters to 1 reader
KEY = "load-admin-key-00000000000000"
DISTRICT = "load"
RESENT = "POST /v1/events again"  # the locustfile's row of resends (as clients do on a 503)
LOCUSTFILE = Path(__file__).resolve().parents[1] / "load" / "locustfile.py"


@pytest.fixture
def stack(
    pg_dsn: str, clickhouse_url: str, kafka_bootstrap: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    keys = write_keys(tmp_path / "keys.json", [{"key": KEY, "role": "admin", "districts": ["*"]}])
    tag = uuid.uuid4().hex[:8]
    env = {
        "TUTORLEDGER_EVENT_STORE": pg_dsn,
        "TUTORLEDGER_STREAM": f"kafka://{kafka_bootstrap}",
        "TUTORLEDGER_CLICKHOUSE": clickhouse_url,
        "TUTORLEDGER_API_KEYS_FILE": str(keys),
        "TUTORLEDGER_VAR_DIR": str(tmp_path / "var"),
        "TUTORLEDGER_KAFKA_TOPIC": f"load-{tag}",
        "TUTORLEDGER_KAFKA_DEAD_LETTER_TOPIC": f"load-{tag}.dlq",
        "TUTORLEDGER_KAFKA_GROUP": f"load-{tag}",
        "TUTORLEDGER_KAFKA_PARTITIONS": "3",
    }
    api = live.serve(env, tmp_path / "api.log", workers=2, timeout=300)
    relay = live.spawn("relay", ["relay"], env, tmp_path / "relay.log")
    projector = live.spawn("projector", ["project"], env, tmp_path / "projector.log")
    try:
        yield {"api": api, "dsn": pg_dsn}
    finally:
        for proc in (projector, relay, api):
            proc.stop()


def run_locust(base_url: str, out: Path) -> dict[str, dict[str, str]]:
    """locust --headless for SECONDS; its stats rows by request name."""
    env = {
        **os.environ,
        "TUTORLEDGER_LOAD_KEY": KEY,
        "TUTORLEDGER_LOAD_DISTRICT": DISTRICT,
        "OTEL_SDK_DISABLED": "true",
    }
    cmd = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless",
           "--host", base_url, "-u", str(USERS), "-r", str(USERS), "-t", f"{SECONDS}s",
           "--csv", str(out / "locust"), "--only-summary", "--stop-timeout", "30",
           "--loglevel", "WARNING", "--exit-code-on-error", "0"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=SECONDS + 300, cwd=out)
    (out / "locust.log").write_bytes(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stderr or done.stdout).decode(errors="replace")[-3000:]
    with (out / "locust_stats.csv").open() as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def summary(row: dict[str, str]) -> dict[str, Any]:
    """Requests, failures and latency percentiles (ms, locust's rounding) of one stats row."""
    return {
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "p50_ms": float(row["50%"]),
        "p99_ms": float(row["99%"]),
    }


def stored_events(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM ledger_index")
        total, distinct = row.fetchone() or (0, 0)
    return int(total), int(distinct)


def failures(out: Path, api: live.Proc) -> str:
    """What locust counted as failed, and the API's log lines that are not plain successes:
    enough to tell a refused batch from a dropped connection without the run's files."""
    failed = (out / "locust_failures.csv").read_text()
    lines = api.log_path.read_text(errors="replace").splitlines()
    errors = [line for line in lines if '"level": "info"' not in line or "process [" in line]
    return f"locust failures:\n{failed}\nAPI log, not info:\n" + "\n".join(errors[-40:])


def test_load_reports_throughput_and_latency(stack: dict[str, Any], tmp_path: Path) -> None:
    api: live.Proc = stack["api"]
    started = time.monotonic()
    stats = run_locust(api.base_url, tmp_path)
    seconds = time.monotonic() - started
    assert api.alive(), f"the API exited during the load:\n{api.log()}"
    stored, distinct = stored_events(stack["dsn"])
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=api.base_url, timeout=120, headers=headers) as client:
        lag = client.get("/readyz").json()["checks"].get("projection_lag")
        verify = client.get("/v1/audit/verify", params={"district_id": DISTRICT}).json()
    reads = {n: s for n, s in stats.items() if n.startswith("GET /v1/metrics/")}
    post = stats["POST /v1/events"]
    resent = sum(int(s["Request Count"]) for n, s in stats.items() if n.startswith(RESENT))
    log = api.log_path.read_text(errors="replace")
    report = {
        "seconds": round(seconds, 1),
        "users": USERS,
        "api_workers": 2,
        "events_stored": stored,
        "events_per_second": round(stored / seconds, 1),
        "post_events": summary(post),
        "batches_resent_after_503_or_dropped_connection": resent,
        "api_worker_starts": log.count('"msg": "Started server process'),
        "write_races_lost": log.count("write race lost"),
        "metric_reads": {name: summary(row) for name, row in reads.items()},
        "projection_lag_at_end": lag,
    }
    (tmp_path / "load-report.json").write_text(json.dumps(report, indent=1))
    print("load:", json.dumps(report))  # noqa: T201
    assert int(post["Request Count"]) > 0 and reads, stats.keys()
    assert all(int(s["Failure Count"]) == 0 for s in stats.values()), failures(tmp_path, api)
    assert stored == distinct > 0
    assert verify["ok"] and verify["checked"] == stored, verify
