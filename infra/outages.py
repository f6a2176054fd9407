"""Which exceptions mean "a server we depend on is down right now" (answer 503, retry later).

Kept in infra because only infra knows the drivers; the API maps these to one status code.
"""

from __future__ import annotations

import psycopg
from clickhouse_driver import errors as clickhouse_errors
from eventsourcing.persistence import (
    ConnectionUnavailableError,
    InterfaceError,
    OperationalError,
)

OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionUnavailableError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    clickhouse_errors.NetworkError,
    clickhouse_errors.SocketTimeoutError,
    ConnectionError,
    EOFError,
)

# Seconds a client should wait before retrying a request that met an outage.
RETRY_AFTER_SECONDS = 2
