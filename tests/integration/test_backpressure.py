"""Back-pressure: the projector, then ClickHouse, down while events keep coming.

The ledger (and behind the relay, Kafka) is the buffer, so ingest never waits on the
figures. In the production shape (private PostgreSQL, tansu, ClickHouse 18.16; `serve`,
`relay`, `project` as processes):

1. projector killed: every event posted is accepted, and `/readyz` reports exactly those
   as `projection_lag` while `relay_lag` returns to 0 (they wait in Kafka);
2. projector back, then the ClickHouse server stopped: every event is still accepted,
   `/readyz` says not ready with the projections' error, the relay keeps draining the
   ledger, and the resident memory (RSS) of the API, relay and projector is sampled while
   the events wait: each of ours holds at most one batch, whatever the backlog;
3. ClickHouse back: the projector drains the backlog, lag 0, each position projected once.

TUTORLEDGER_BACKPRESSURE_EVENTS (default 20,000) sets how many wait in step 2; the RSS
figures are printed, and bounded only loosely (a process holding the backlog would not be).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import live
import pytest
from builders import write_keys
from faults import PrivatePostgres, RestartableClickHouse, start_or_skip
from waiting import wait_until

from devtools.services import start_tansu
from tutorledger.bench.district import DistrictSpec, generate

WAITING = int(os.environ.get("TUTORLEDGER_BACKPRESSURE_EVENTS", "20000"))
FIRST = 3000  # events posted while the projector is down (rounded up to a district)
KEY = "backpressure-admin-key-000000"
RSS_BOUND_MB = 600  # far above one batch; far below a backlog of 1 M events held in memory


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (no dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    pg = start_or_skip("private PostgreSQL", PrivatePostgres.create)
    clickhouse = RestartableClickHouse(tmp_path / "ch")
    broker: Any = None
    procs: dict[str, live.Proc] = {}
    try:
        broker = start_or_skip("tansu", start_tansu)
        start_or_skip("ClickHouse server", clickhouse.start)
        keys = write_keys(tmp_path / "keys.json", [{"key": KEY, "role": "admin",
                                                     "districts": ["*"]}])  # fmt: skip
        env = {"TUTORLEDGER_EVENT_STORE": pg.dsn(), "TUTORLEDGER_CLICKHOUSE": clickhouse.url,
               "TUTORLEDGER_STREAM": f"kafka://{broker.bootstrap}",
               "TUTORLEDGER_API_KEYS_FILE": str(keys), "TUTORLEDGER_VAR_DIR": str(tmp_path),
               "TUTORLEDGER_KAFKA_PARTITIONS": "3"}  # fmt: skip
        procs["api"] = live.serve(env, tmp_path / "api.log", timeout=300)
        procs["relay"] = live.spawn("relay", ["relay"], env, tmp_path / "relay.log")
        procs["projector"] = live.spawn("projector", ["project"], env, tmp_path / "projector.log")
        yield {"procs": procs, "env": env, "clickhouse": clickhouse, "broker": broker,
               "tmp": tmp_path}  # fmt: skip
    finally:
        for proc in procs.values():
            proc.stop()
        if broker is not None:
            broker.stop()
        clickhouse.stop()
        pg.destroy()


def district_events(seed: int) -> list[dict[str, Any]]:
    """One generated district (about 5,000 events): an emitter's unit of work."""
    spec = DistrictSpec(district_id=f"bp-{seed}", students=400, schools=3, days=10, seed=seed)
    return generate(spec).events


def post_all(base_url: str, total: int, seed: int, emitters: int = 3) -> int:
    """Post at least `total` events from `emitters` threads, each posting whole districts in
    order (a session's events never race), generated one at a time so this test never holds
    the backlog; returns the events accepted. Nothing may be rejected."""
    lock, seeds, sent, errors = threading.Lock(), iter(range(seed, seed + 10**6)), [0, 0], []
    headers = {"Authorization": f"Bearer {KEY}"}

    def emit() -> None:
        with httpx.Client(base_url=base_url, timeout=300, headers=headers) as client:
            while True:
                with lock:
                    if sent[0] >= total:
                        return
                    events = district_events(next(seeds))
                    sent[0] += len(events)
                for i in range(0, len(events), 1000):
                    batch = events[i : i + 1000]
                    answer = client.post("/v1/events", json={"events": batch})
                    results = answer.json()["results"]
                    with lock:
                        sent[1] += sum(r["status"] == "accepted" for r in results)
                        errors.extend(r for r in results if r["status"] == "rejected")

    threads = [threading.Thread(target=emit) for _ in range(emitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    return sent[1]


def checks(base_url: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {KEY}"}  # ledger positions are shown to a key only
    answer = httpx.get(f"{base_url}/readyz", timeout=60, headers=auth).json()
    result: dict[str, Any] = answer["checks"] | {"ready": answer["ready"]}
    return result


class Sampler(threading.Thread):
    """Peak RSS (MB) of each watched process while running."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak = pids, dict.fromkeys(pids, 0.0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mb(pid))


def test_ingest_keeps_accepting_while_figures_wait(stack: dict[str, Any]) -> None:
    procs: dict[str, live.Proc] = stack["procs"]
    url = procs["api"].base_url
    report: dict[str, Any] = {}
    # 1. The projector is down: events wait in Kafka, /readyz counts them.
    wait_until(lambda: checks(url).get("projection_lag") == 0, "an empty pipeline caught up")
    procs["projector"].kill()
    accepted = post_all(url, FIRST, seed=1000)
    wait_until(lambda: checks(url).get("relay_lag") == 0, "the relay to drain the ledger")
    report["projector_down"] = {"accepted": accepted, "readyz": checks(url)}
    assert report["projector_down"]["readyz"]["projection_lag"] == accepted > 0

    # 2. Projector back and caught up; then ClickHouse down while WAITING events arrive.
    procs["projector"] = live.spawn("projector", ["project"], stack["env"],
                                    stack["tmp"] / "projector.log")  # fmt: skip
    wait_until(lambda: checks(url).get("projection_lag") == 0, "the projector to catch up")
    pids = {name: proc.pid for name, proc in procs.items()} | {"tansu": stack["broker"].pid}
    before = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    stack["clickhouse"].stop()
    sampler = Sampler(pids)
    sampler.start()
    started = time.monotonic()
    accepted = post_all(url, WAITING, seed=2000)
    seconds = time.monotonic() - started
    wait_until(lambda: checks(url).get("relay_lag") == 0, "the relay to drain the ledger", 3600)
    down = checks(url)
    sampler.done.set()
    sampler.join()
    report["clickhouse_down"] = {
        "accepted": accepted, "ingest_events_per_second": round(accepted / seconds, 1),
        "readyz": down, "rss_mb_before": before,
        "rss_mb_peak_while_waiting": {k: round(v, 1) for k, v in sampler.peak.items()},
    }  # fmt: skip
    assert down["ready"] is False and down["projections"]["ok"] is False, down
    assert all(procs[n].alive() for n in ("api", "relay", "projector"))

    # 3. ClickHouse back: the projector drains everything.
    drain = Sampler({"projector": procs["projector"].pid})
    drain.start()
    stack["clickhouse"].start()
    started = time.monotonic()
    wait_until(lambda: checks(url).get("projection_lag") == 0, "the backlog projected", 3600)
    drain.done.set()
    drain.join()
    report["drained"] = {"seconds": round(time.monotonic() - started, 1),
                         "projector_rss_mb_peak": round(drain.peak["projector"], 1)}  # fmt: skip
    print("back-pressure:", json.dumps(report))  # noqa: T201
    (stack["tmp"] / "backpressure-report.json").write_text(json.dumps(report, indent=1))
    gaps = repair_check(stack["env"], stack["tmp"])
    assert gaps["ok"] and gaps["checked_upto"] == checks(url)["event_store"]["head_position"]
    for name in ("api", "relay", "projector"):
        assert report["clickhouse_down"]["rss_mb_peak_while_waiting"][name] < RSS_BOUND_MB


def repair_check(env: dict[str, str], work: Path) -> dict[str, Any]:
    """`tutorledger repair --dry-run`: every ledger position is projected."""
    import subprocess

    done = subprocess.run([str(live.CLI), "repair", "--dry-run"], env=live.clean_env(env),
                          capture_output=True, timeout=600, cwd=work)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
