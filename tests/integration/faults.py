"""A production-shaped stack that a test can break: every server restartable on its own port.

- PostgreSQL: a private cluster (initdb into a temp dir, run as the postgres user, on a free
  loopback port), never the shared system cluster, so it can be stopped at will.
- Kafka protocol: tansu. Its PyPI build has only memory and S3 storage, so its log lives in
  an S3 bucket served by moto on loopback; killing and restarting tansu keeps the log.
- ClickHouse 18.16 server with a fixed data dir and fixed ports.
- relay, projector and API: the `tutorledger` processes, SIGKILLed and restarted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import live
import psycopg
import pytest

from devtools.services import ServiceError, free_port, start_clickhouse, tansu_binary
from devtools.services.procs import ServerProcess, free_ports

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class PrivatePostgres:
    """A throwaway cluster of our own: the one the harness stops and restarts."""

    root: Path
    port: int

    @classmethod
    def create(cls) -> PrivatePostgres:
        if not (PG_BIN / "initdb").exists():
            raise ServiceError(f"no initdb in {PG_BIN}: apt-get install postgresql")
        root = Path(tempfile.mkdtemp(prefix="tutorledger-faults-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        cmd = [str(PG_BIN / "initdb"), "-D", f"{root}/data", "--auth=trust", "-U", "postgres"]
        subprocess.run(as_postgres(cmd), check=True, capture_output=True, timeout=120)
        server = cls(root, free_port())
        server.start()
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE ledger")
        return server

    def dsn(self, database: str = "ledger") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        cmd = [str(PG_BIN / "pg_ctl"), "-D", f"{self.root}/data", "-w", *args]
        subprocess.run(as_postgres(cmd), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-l", f"{self.root}/log", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already down
        shutil.rmtree(self.root, ignore_errors=True)


T = TypeVar("T")


def start_or_skip(what: str, start: Callable[[], T]) -> T:
    """Start a server; if it cannot be had, skip (or fail with TUTORLEDGER_REQUIRE_SERVICES=1)."""
    try:
        return start()
    except Exception as exc:
        reason = f"{what} unavailable: {type(exc).__name__}: {exc}"
    if os.environ.get("TUTORLEDGER_REQUIRE_SERVICES") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def start_process(name: str, cmd: list[str], env: dict[str, str], log: Path) -> ServerProcess:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    return ServerProcess(name, popen, log)


def wait_for(probe: Callable[[], object], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not ready in {timeout:.0f}s: {exc!r}") from exc
            time.sleep(0.3)


@dataclass
class DurableBroker:
    """tansu on S3 storage (moto on loopback): a tansu restart keeps topics and offsets."""

    work: Path
    port: int = field(default_factory=free_port)
    s3_port: int = field(default_factory=free_port)
    s3: ServerProcess | None = None
    broker: ServerProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_storage(self) -> None:
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)]
        self.s3 = start_process("moto-s3", cmd, dict(os.environ), self.work / "s3.log")
        url = f"http://127.0.0.1:{self.s3_port}/tansu"
        wait_for(lambda: httpx.put(url, timeout=5).raise_for_status(), "S3 bucket")

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "tansu",
            "AWS_SECRET_ACCESS_KEY": "tansu",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ALLOW_HTTP": "true",
        }
        cmd = [str(tansu_binary()), "broker", "--listener-url", url,
               "--advertised-listener-url", url, "--storage-engine", "s3://tansu/"]  # fmt: skip
        self.broker = start_process("tansu", cmd, env, self.work / "tansu.log")
        wait_for(self._probe, "tansu")

    def _probe(self) -> None:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            admin.list_topics()
        finally:
            admin.close()

    def kill(self) -> None:
        assert self.broker is not None
        os.kill(self.broker.pid, signal.SIGKILL)
        self.broker.popen.wait(30)

    def stop(self) -> None:
        for proc in (self.broker, self.s3):
            if proc is not None:
                proc.stop()


@dataclass
class RestartableClickHouse:
    data_dir: Path
    ports: tuple[int, int, int] = field(default_factory=lambda: tuple(free_ports(3)))  # type: ignore[arg-type]
    server: object | None = None

    def start(self) -> None:
        self.server = start_clickhouse(self.data_dir, timeout=120, ports=self.ports)

    def stop(self) -> None:
        if self.server is not None:
            self.server.process.stop(timeout=60)  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"clickhouse://default@127.0.0.1:{self.ports[0]}/faults"


def stack_env(pg: PrivatePostgres, broker: DurableBroker, ch: RestartableClickHouse,
              keys: Path, work: Path) -> dict[str, str]:  # fmt: skip
    return {
        "TUTORLEDGER_EVENT_STORE": pg.dsn(),
        "TUTORLEDGER_STREAM": f"kafka://{broker.bootstrap}",
        "TUTORLEDGER_CLICKHOUSE": ch.url,
        "TUTORLEDGER_API_KEYS_FILE": str(keys),
        "TUTORLEDGER_VAR_DIR": str(work / "var"),
        "TUTORLEDGER_KAFKA_PARTITIONS": "3",
        "TUTORLEDGER_PROJECTOR_BATCH_SIZE": "500",
    }


@dataclass
class Workers:
    """relay, projector and API processes, each restartable after a SIGKILL."""

    env: dict[str, str]
    work: Path
    api_port: int = field(default_factory=live.free_port)
    procs: dict[str, live.Proc] = field(default_factory=dict)

    def start(self, name: str) -> None:
        log = self.work / f"{name}.log"
        if name == "api":
            self.procs[name] = live.serve(self.env, log, port=self.api_port, timeout=300)
            return
        args = ["relay", "--batch-size", "200"] if name == "relay" else ["project"]
        self.procs[name] = live.spawn(name, args, self.env, log)

    def kill(self, name: str) -> None:
        self.procs[name].kill()

    def run_cli(self, args: list[str]) -> dict[str, Any]:
        """A one-shot `tutorledger` command against the stack; its JSON report."""
        done = subprocess.run([str(live.CLI), *args], env=live.clean_env(self.env),
                              capture_output=True, timeout=600, cwd=self.work)  # fmt: skip
        assert done.returncode in (0, 1), done.stderr.decode(errors="replace")
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    def ensure_alive(self) -> None:
        """A worker that died on its own (a dependency was down at its start) is started again."""
        for name, proc in list(self.procs.items()):
            if not proc.alive():
                self.start(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
