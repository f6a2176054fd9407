"""A `tutorledger serve` process on a free loopback port: started, awaited, stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import installed

START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(tmp: Path, keys_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTORLEDGER_")}
    env.update(
        TUTORLEDGER_EVENT_STORE=f"sqlite:///{tmp}/ledger.db",
        TUTORLEDGER_CLICKHOUSE=f"chdb://{tmp}/projections",
        TUTORLEDGER_API_KEYS_FILE=str(keys_file),
        TUTORLEDGER_VAR_DIR=str(tmp / "var"),
        COLUMNS="200",
        NO_COLOR="1",
    )
    return env


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def start_server(tmp: Path, keys_file: Path, tag: str, cli: Path | None = None) -> Server:
    """`tutorledger serve` (the installed script unless `cli` says) on a free port, healthy."""
    port = free_port()
    log_path = tmp / f"server-{tag}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(cli or installed.cli()), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp,
            env=server_env(tmp, keys_file),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not healthy in {START_TIMEOUT}s:\n{server.log()}")
            time.sleep(0.2)
    except BaseException:
        kill(server)
        raise


def stop(server: Server, timeout: float = 30.0) -> int:
    """SIGTERM by pid and wait; returns the exit code."""
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGTERM)
    try:
        return server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(server)
        raise AssertionError(f"server ignored SIGTERM for {timeout}s:\n{server.log()}") from None


def kill(server: Server) -> None:
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
