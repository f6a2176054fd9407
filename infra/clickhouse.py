"""Projection stores: one interface over chdb (in-process) and a ClickHouse server.

Queries are written once with `%(name)s` parameters; values are escaped by
clickhouse-driver's own escaping for both backends, never formatted by hand.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlencode, urlparse

import orjson
from clickhouse_driver.util.escape import escape_params

from tutorledger.domain.errors import ProjectionsInUse, QueryTimeout, Unavailable
from tutorledger.infra.clickhouse_cluster import (
    CLUSTER_SUFFIX,
    SHARD_COLUMN,
    Ddl,
    ShardMap,
    ddl_of,
    distributed_sql,
    replicated_engine,
)
from tutorledger.infra.settings import Settings

Row = tuple[Any, ...]
_ESCAPE_CONTEXT = SimpleNamespace(server_info=None, client_settings={})


def bind(sql: str, params: Mapping[str, Any] | None) -> str:
    """Substitute `%(name)s` parameters with ClickHouse-escaped literals."""
    if not params:
        return sql
    escaped: dict[str, Any] = escape_params(dict(params), _ESCAPE_CONTEXT)
    return sql % escaped


T = TypeVar("T")

# When the queries of this context (one figure request: the API sets it, its worker thread
# inherits it) must be done by, on time.monotonic()'s clock; None: no limit (projectors,
# rebuilds, the CLI).
_DEADLINE: ContextVar[float | None] = ContextVar("tutorledger_query_deadline", default=None)
TIMEOUT_CODE = 159  # ClickHouse's TIMEOUT_EXCEEDED, on 18.16 and chdb alike


@contextmanager
def query_budget(seconds: float) -> Iterator[None]:
    """The queries run inside share `seconds` of ClickHouse time: each runs with
    `max_execution_time` = what is left, and none starts once it is spent (QueryTimeout)."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def seconds_left() -> float | None:
    """What is left of this context's query budget (None: unbounded); QueryTimeout if spent."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise QueryTimeout("the figures took longer than this server allows; narrow the request")
    return left


def _timed_out(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    return code == TIMEOUT_CODE or f"Code: {TIMEOUT_CODE}." in str(exc)


# ClickHouse refuses a query whose text exceeds max_query_size (256 KiB by default, on 18.16
# and chdb alike), so long IN lists go in parts of at most this many bytes: a projector's
# batch has no upper bound (`projector_batch_size`) and session ids may be 128 characters.
LIST_BYTES = 64 * 1024


def in_parts(values: Sequence[T]) -> Iterator[list[T]]:
    """`values` in consecutive parts whose rendered IN lists (`listed_size`) take at most
    LIST_BYTES each."""
    part: list[T] = []
    used = 0
    for value in values:
        cost = listed_size(value)
        if part and used + cost > LIST_BYTES:
            yield part
            part, used = [], 0
        part.append(value)
        used += cost
    if part:
        yield part


def listed_size(value: object) -> int:
    """Bytes a value takes in a rendered IN list: its text, quotes and the separator."""
    return len(str(value)) + 4


@dataclass(frozen=True)
class Encoded:
    """A block of rows in the form one store sends it (chdb: JSON text; a server: columns).
    Encoding is Python work, sending is not: a bulk copier encodes the next block on its
    own thread while the previous one is being sent."""

    table: str
    columns: tuple[str, ...]
    payload: object


class ProjectionStore(Protocol):
    """What projections need from ClickHouse: run SQL, insert rows in one block."""

    kind: str

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows as one block (atomic on MergeTree tables)."""
        ...

    def encode(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Encoded:
        """`insert` in two steps: this one makes the block (`rows` must not be empty) …"""
        ...

    def send(self, block: Encoded) -> None:
        """… and this one inserts it."""
        ...

    def close(self) -> None: ...


# orjson writes dates and times itself (RFC 3339; naive times taken as UTC), which
# ClickHouse reads with best-effort parsing: one C pass over a whole block.
_JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_OMIT_MICROSECONDS


def chdb_holder(path: Path) -> int | None:
    """The id of another process holding the chdb data dir, else None. ClickHouse keeps
    an exclusive `flock` on `<dir>/status` (which names its PID) while it runs; this process's
    own sessions do not count."""
    status = path / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            found = re.search(rb"PID: (\d+)", os.read(fd, 4096))
            pid = int(found.group(1)) if found else -1
            return None if pid == os.getpid() else pid
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class ChdbStore:
    """ClickHouse in-process (chdb). One process may hold a data dir, so calls are serialised."""

    kind = "chdb"

    def __init__(self, path: str, database: str = "tutorledger") -> None:
        from chdb import session

        Path(path).mkdir(parents=True, exist_ok=True)
        holder = chdb_holder(Path(path))
        if holder is not None:  # asked before chdb, which would print its own error first
            raise ProjectionsInUse(f"process {holder} holds the projections at {path}")
        self._lock = threading.Lock()
        try:
            self._session: Any = session.Session(path)
        except Exception as exc:  # chdb raises bare RuntimeErrors
            if "Cannot lock file" in str(exc):  # another process (a running serve) holds it
                raise ProjectionsInUse(f"another process holds the projections at {path}") from exc
            raise Unavailable(f"cannot open chdb data dir {path}: {exc}") from exc
        self._session.query(f"CREATE DATABASE IF NOT EXISTS {database}")
        self._session.query(f"USE {database}")

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        left = seconds_left()
        if left is None:
            with self._lock:
                result = self._session.query(bind(sql, params), "JSONCompact")
        else:
            result = self._bounded(bind(sql, params), left)
        raw = result.bytes()
        if not raw:
            return []
        return [tuple(r) for r in json.loads(raw)["data"]]

    def _bounded(self, sql: str, left: float) -> Any:
        """One query within `left` seconds, waiting for the data dir included: the session's
        max_execution_time is set for it and put back (chdb interrupts a query past it)."""
        if not self._lock.acquire(timeout=left):
            raise QueryTimeout("the figures waited longer than this server allows; retry")
        try:
            remaining = seconds_left() or left
            self._session.query(f"SET max_execution_time = {math.ceil(remaining)}")
            try:
                return self._session.query(sql, "JSONCompact")
            except Exception as exc:
                if _timed_out(exc):
                    raise QueryTimeout("a figure query ran past this server's limit") from exc
                raise
            finally:
                self._session.query("SET max_execution_time = 0")
        finally:
            self._lock.release()

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.send(self.encode(table, columns, rows))

    def encode(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Encoded:
        # The block as one JSON array; its rows come out comma-separated, which the EachRow
        # formats accept.
        body = orjson.dumps(list(rows), option=_JSON_OPTIONS)[1:-1].decode()
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"SETTINGS date_time_input_format = 'best_effort' "
            f"FORMAT JSONCompactEachRow\n{body}\n"
        )
        return Encoded(table, tuple(columns), sql)

    def send(self, block: Encoded) -> None:
        if not isinstance(block.payload, str):
            raise TypeError("a chdb block is the text of its INSERT")
        with self._lock:
            self._session.query(block.payload)

    def close(self) -> None:
        with self._lock:
            self._session.close()


class ServerStore:
    """A ClickHouse server through clickhouse-driver's native protocol."""

    kind = "clickhouse"

    def __init__(self, url: str) -> None:
        from clickhouse_driver import Client

        parsed = urlparse(url)
        database = parsed.path.lstrip("/") or "default"
        bootstrap = Client.from_url(parsed._replace(scheme="clickhouse", path="/default").geturl())
        try:
            bootstrap.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
        except Exception as exc:
            raise Unavailable(f"ClickHouse server unreachable at {parsed.hostname}: {exc}") from exc
        finally:
            bootstrap.disconnect()
        # Bounded waits: a hung server must fail a step (to be retried), not block forever.
        query = dict(parse_qs(parsed.query))
        query.setdefault("connect_timeout", ["5"])
        query.setdefault("send_receive_timeout", ["60"])
        self._url = parsed._replace(query=urlencode(query, doseq=True)).geturl()
        self._local = threading.local()

    def _client(self) -> Any:
        from clickhouse_driver import Client

        client = getattr(self._local, "client", None)
        if client is None:
            client = Client.from_url(self._url)
            self._local.client = client
        return client

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        left = seconds_left()
        limits = {} if left is None else {"max_execution_time": math.ceil(left)}
        try:
            rows: list[Row] = self._client().execute(bind(sql, params), settings=limits)
        except (OSError, EOFError) as exc:
            raise Unavailable(f"ClickHouse server unreachable: {exc}") from exc
        except Exception as exc:
            if _timed_out(exc):
                raise QueryTimeout("a figure query ran past this server's limit") from exc
            raise
        return rows

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.send(self.encode(table, columns, rows))

    def encode(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Encoded:
        # Columnar: one transpose in C instead of the driver's per-row, per-column Python loop.
        return Encoded(table, tuple(columns), list(zip(*rows, strict=True)))

    def send(self, block: Encoded) -> None:
        if not isinstance(block.payload, list):
            raise TypeError("a server block is the list of its columns")
        try:
            self._client().execute(
                f"INSERT INTO {block.table} ({', '.join(block.columns)}) VALUES",
                block.payload,
                columnar=True,
            )
        except (OSError, EOFError) as exc:
            raise Unavailable(f"ClickHouse server unreachable: {exc}") from exc

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.disconnect()


# ClickHouse errors that mean "a shard did not answer": a Distributed query over a shard
# that is down fails with these, and a caller must see Unavailable (retry), not a bug.
_UNREACHABLE_CODES = {209, 210, 279}  # SOCKET_TIMEOUT, NETWORK_ERROR, ALL_CONNECTION_TRIES_FAILED
UNKNOWN_TABLE = 60


class ClusterStore:
    """The projections sharded by district over a cluster's shards (docs/scaling.md).

    Queries run on the front server's `<database>_cluster` database, whose Distributed
    tables have the single-node tables' names, so every metric's SQL is unchanged. Schema
    statements run on every shard, then the Distributed tables follow them. Rows are
    written straight into the local table of the shard owning their district, one atomic
    block per shard: each insert returns only once the shard holds the rows, so a projector
    commits its offsets after the data landed, and the writers' "already present?" check
    reads the very tables the rows went to (no Distributed queue in between).
    """

    kind = "clickhouse"

    def __init__(self, url: str, cluster: str) -> None:
        parsed = urlparse(url)
        self.database = parsed.path.lstrip("/") or "default"
        self.front_database = f"{self.database}{CLUSTER_SUFFIX}"
        self.cluster = cluster
        self._front = ServerStore(parsed._replace(path=f"/{self.front_database}").geturl())
        shards = self._front.execute(
            "SELECT shard_num, any(shard_weight), any(host_name), any(port) "
            "FROM system.clusters WHERE cluster = %(c)s GROUP BY shard_num ORDER BY shard_num",
            {"c": cluster},
        )
        if not shards:
            raise Unavailable(f"no cluster {cluster!r} in the server's remote_servers")
        self.shards = ShardMap([int(weight) for _, weight, _, _ in shards])
        netloc = parsed.netloc.rpartition("@")[0]
        self.nodes = [
            ServerStore(
                parsed._replace(
                    netloc=f"{netloc}@{host}:{port}" if netloc else f"{host}:{port}"
                ).geturl()
            )
            for _, _, host, port in shards
        ]
        engine = self.nodes[0].execute(
            "SELECT engine FROM system.databases WHERE name = %(db)s", {"db": self.database}
        )
        self.replicated = bool(engine) and str(engine[0][0]) == "Replicated"
        self._owners: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sync()

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        ddl = ddl_of(sql)
        try:
            if ddl is None:
                return self._query(sql, params)
            self._schema(ddl, sql, params)
            return []
        except Exception as exc:
            if getattr(exc, "code", None) in _UNREACHABLE_CODES:
                raise Unavailable(f"a ClickHouse shard did not answer: {exc}") from exc
            raise

    def _query(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        """A query on the Distributed tables; a table another process created on the shards
        (a rebuild's next generation) gets its Distributed table here on first use."""
        try:
            return self._front.execute(sql, params)
        except Exception as exc:
            if getattr(exc, "code", None) != UNKNOWN_TABLE:
                raise
        self._sync()
        return self._front.execute(sql, params)

    def _schema(self, ddl: Ddl, sql: str, params: Mapping[str, Any] | None) -> None:
        """Run a schema statement on every shard and bring the Distributed tables along."""
        front = self.front_database
        if ddl.kind in ("drop", "rename"):  # a Distributed table names its remote table
            for table in ddl.tables:
                self._front.execute(f"DROP TABLE IF EXISTS {front}.{table}")
        if self.replicated and ddl.kind == "create":
            sql = replicated_engine(sql)
        for node in self.nodes:
            if ddl.kind == "add_column" and _has(node, ddl.tables[0], ddl.column):
                continue  # ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS
            node.execute(sql, params)
        if ddl.kind == "add_column" and not _has(self._front, ddl.tables[0], ddl.column):
            self._front.execute(sql.replace(ddl.tables[0], f"{front}.{ddl.tables[0]}", 1))
        self._sync()

    def _sync(self) -> None:
        """A Distributed table for every table of the shards that has none yet."""
        local = {str(r[0]) for r in self.nodes[0].execute("SHOW TABLES")}
        present = {str(r[0]) for r in self._front.execute("SHOW TABLES")}
        for table in sorted(local - present):
            sharded = _has(self.nodes[0], table, SHARD_COLUMN)
            self._front.execute(
                distributed_sql(self.cluster, self.database, self.front_database, table, sharded)
            )

    def owner(self, district_ids: Sequence[str]) -> dict[str, int]:
        """The shard index of each district, asked once of ClickHouse's own cityHash64."""
        with self._lock:
            missing = sorted(set(district_ids) - set(self._owners))
        if missing:
            rows = self._front.execute(
                "SELECT d, cityHash64(d) FROM (SELECT arrayJoin(%(ds)s) AS d)", {"ds": missing}
            )
            with self._lock:
                self._owners.update((str(d), self.shards.shard(int(h))) for d, h in rows)
        with self._lock:
            return {d: self._owners[d] for d in district_ids}

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.send(self.encode(table, columns, rows))

    def encode(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Encoded:
        """One block per owning shard; rows without a district go to the first shard."""
        parts: dict[int, list[Sequence[Any]]] = {}
        if SHARD_COLUMN in columns:
            at = list(columns).index(SHARD_COLUMN)
            owners = self.owner([str(row[at]) for row in rows])
            for row in rows:
                parts.setdefault(owners[str(row[at])], []).append(row)
        else:
            parts[0] = list(rows)
        blocks = [
            (i, self.nodes[i].encode(table, columns, part)) for i, part in sorted(parts.items())
        ]
        return Encoded(table, tuple(columns), blocks)

    def send(self, block: Encoded) -> None:
        if not isinstance(block.payload, list):
            raise TypeError("a cluster block is the list of its shards' blocks")
        for index, part in block.payload:
            self.nodes[index].send(part)

    def close(self) -> None:
        self._front.close()
        for node in self.nodes:
            node.close()


def _has(store: ServerStore, table: str, column: str) -> bool:
    return column in {str(r[0]) for r in store.execute(f"DESCRIBE TABLE {table}")}


def open_projection_store(settings: Settings) -> ProjectionStore:
    """Open the configured projection store (chdb path or server URL)."""
    if settings.projection_kind == "chdb":
        # chdb://PATH[?database=NAME]: one chdb data dir per process, databases within it.
        path, _, query = settings.clickhouse.removeprefix("chdb://").partition("?")
        database = parse_qs(query).get("database", ["tutorledger"])[0]
        return ChdbStore(path or str(settings.var_dir / "projections"), database)
    if settings.clickhouse_cluster:
        return ClusterStore(settings.clickhouse, settings.clickhouse_cluster)
    return ServerStore(settings.clickhouse)
