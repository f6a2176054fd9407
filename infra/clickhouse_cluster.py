"""Cluster mode's plain parts: which statement is DDL, which shard owns a district.

The projections of a cluster live in the same tables as on one node, in the database the
URL names, on every shard; the front server's `<database>_cluster` database holds a
`Distributed` table of the same name over each, so the metric SQL runs there unchanged.
Rows are sharded by `cityHash64(district_id)`: one district's rows sit on one shard, which
is what keeps ReplacingMergeTree merges and FINAL (both local to a shard) exact.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

SHARD_COLUMN = "district_id"
SHARDING_KEY = f"cityHash64({SHARD_COLUMN})"
CLUSTER_SUFFIX = "_cluster"

_CREATE = re.compile(r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)
_ALTER = re.compile(r"^\s*ALTER\s+TABLE\s+(\w+)\s+ADD\s+COLUMN\s+(\w+)\s", re.IGNORECASE)
_DROP = re.compile(r"^\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(\w+)\s*$", re.IGNORECASE)
_RENAME = re.compile(r"^\s*RENAME\s+TABLE\s+(.+)$", re.IGNORECASE | re.DOTALL)
_PAIR = re.compile(r"^\s*(\w+)\s+TO\s+(\w+)\s*$", re.IGNORECASE)
_ENGINE = re.compile(r"ENGINE\s*=\s*(Replacing)?MergeTree\b(?:\(\))?", re.IGNORECASE)
_OTHER_DDL = re.compile(r"^\s*(ALTER|RENAME|DROP|TRUNCATE|OPTIMIZE)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Ddl:
    """A schema statement every shard must run: `kind` is create, add_column, drop or rename;
    `tables` the names it touches (old and new names of a rename); `column` an added one."""

    kind: str
    tables: tuple[str, ...]
    column: str = ""


def ddl_of(sql: str) -> Ddl | None:
    """The schema change `sql` makes, or None for a query (run on the Distributed tables).
    A schema statement of another shape is refused: run on one node only it would leave
    the shards' tables different."""
    if found := _CREATE.match(sql):
        return Ddl("create", (found[1],))
    if found := _ALTER.match(sql):
        return Ddl("add_column", (found[1],), found[2])
    if found := _DROP.match(sql):
        return Ddl("drop", (found[1],))
    if found := _RENAME.match(sql):
        pairs = [_PAIR.match(part) for part in found[1].split(",")]
        if all(pairs):
            return Ddl("rename", tuple(name for p in pairs if p for name in (p[1], p[2])))
    if _OTHER_DDL.match(sql):
        raise ValueError(f"cluster mode cannot run this schema statement on every shard: {sql}")
    return None


def replicated_engine(sql: str) -> str:
    """`sql` with its MergeTree engines replicated, for a shard whose database is a
    `Replicated` one (production with ClickHouse Keeper; not run by the tests here, which
    have no Keeper): a self-hosted server does not convert them itself. Without arguments
    the engine takes the database's own Keeper path and its {shard}/{replica} macros."""
    return _ENGINE.sub(lambda m: f"ENGINE = Replicated{m[1] or ''}MergeTree()", sql)


def distributed_sql(cluster: str, local_db: str, front_db: str, table: str, sharded: bool) -> str:
    """The front database's Distributed table over `table` on every shard. Tables without a
    district (control tables: versions, watermarks, dead letters, generations) get no
    sharding key, so nothing can be inserted through them by mistake: the store writes
    those rows to the first shard itself."""
    key = f", {SHARDING_KEY}" if sharded else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {front_db}.{table} AS {local_db}.{table} "
        f"ENGINE = Distributed({cluster}, {local_db}, {table}{key})"
    )


class ShardMap:
    """Which shard a `cityHash64` of a district id falls on, as a Distributed table with
    these shard weights decides it: the hash modulo the total weight, each shard taking as
    many consecutive slots as its weight, in remote_servers order."""

    def __init__(self, weights: list[int]) -> None:
        if not weights or min(weights) < 1:
            raise ValueError("a cluster needs at least one shard, each of weight >= 1")
        self._bounds = list(accumulate(weights))

    @property
    def total(self) -> int:
        return self._bounds[-1]

    def shard(self, city_hash: int) -> int:
        """The 0-based index of the shard owning a row whose sharding key is `city_hash`."""
        return bisect_right(self._bounds, city_hash % self.total)
