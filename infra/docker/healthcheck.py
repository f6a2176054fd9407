#!/usr/bin/env python3
"""Container healthcheck for the tutorledger image (installed as `tutorledger-healthcheck`).

`tutorledger-healthcheck http URL` passes when URL answers 2xx (the api's /healthz).
`tutorledger-healthcheck deps` passes when every server named by the TUTORLEDGER_*
settings (PostgreSQL, Kafka brokers, ClickHouse) accepts a TCP connection: the
relay and projector have no HTTP port, so their health is "my servers are reachable";
a crashed worker exits and `restart: unless-stopped` brings it back.
Slim images have no curl, hence stdlib only.
"""

from __future__ import annotations

import socket
import sys
import urllib.request
from urllib.parse import urlparse

from tutorledger.infra.settings import Settings

TIMEOUT_SECONDS = 3.0
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "kafka": 9092, "clickhouse": 9000}


def endpoints(settings: Settings) -> list[tuple[str, int]]:
    """Host and port of each network server the settings point at (embedded parts have none)."""
    found: list[tuple[str, int]] = []
    if settings.store_kind == "postgresql":
        found.append(_host_port(settings.event_store))
    if not settings.embedded_stream:
        found.extend(_host_port(f"kafka://{broker}") for broker in settings.kafka_bootstrap)
    if settings.projection_kind == "clickhouse":
        found.append(_host_port(settings.clickhouse))
    return found


def _host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    if not parsed.hostname:
        raise ValueError(f"no host in {parsed.scheme}:// URL")
    return parsed.hostname, parsed.port or DEFAULT_PORTS[parsed.scheme]


def check_http(url: str) -> None:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        if not 200 <= response.status < 300:
            raise RuntimeError(f"{url} answered {response.status}")


def check_deps(settings: Settings) -> None:
    for host, port in endpoints(settings):
        with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS):
            pass


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "http":
            check_http(argv[1])
        elif argv == ["deps"]:
            check_deps(Settings())
        else:
            sys.stderr.write("usage: tutorledger-healthcheck http URL | deps\n")
            return 2
    except Exception as exc:  # any failure means unhealthy; say why in `docker inspect`
        sys.stderr.write(f"unhealthy: {type(exc).__name__}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
