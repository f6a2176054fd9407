"""A ClickHouse cluster on loopback: N clickhouse-server processes as N shards.

Each server has its own ports and data dir and a private copy of the stock config with a
``config.d/cluster.xml`` naming every server as one shard of the cluster ``CLUSTER``
(remote_servers), so a Distributed table on any of them reads all. A shard can be stopped
and started again on the same ports and data dir (`restart`), as an outage would.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .procs import free_ports
from .servers import CLICKHOUSE_CONFIG, LOOPBACK, ClickHouseServer, start_clickhouse

CLUSTER = "tutorledger"
USERS_CONFIG = CLICKHOUSE_CONFIG.parent / "users.xml"


def cluster_xml(name: str, tcp_ports: list[int]) -> str:
    """The remote_servers entry: one shard (of one replica) per server, in this order."""
    shards = "".join(
        f"<shard><replica><host>{LOOPBACK}</host><port>{port}</port></replica></shard>"
        for port in tcp_ports
    )
    # <yandex> is the root 18.16 knows; current ClickHouse reads it too.
    return f"<yandex><remote_servers><{name}>{shards}</{name}></remote_servers></yandex>\n"


def write_config(root: Path, name: str, tcp_ports: list[int]) -> Path:
    """A private copy of the stock config (and users) with the cluster in its config.d."""
    etc = root / "etc"
    (etc / "config.d").mkdir(parents=True, exist_ok=True)
    shutil.copy(CLICKHOUSE_CONFIG, etc / "config.xml")
    shutil.copy(USERS_CONFIG, etc / "users.xml")
    (etc / "config.d" / "cluster.xml").write_text(cluster_xml(name, tcp_ports))
    return etc / "config.xml"


@dataclass
class ClickHouseCluster:
    """Servers we started as the shards of `name`, in remote_servers order."""

    name: str
    root: Path
    ports: list[tuple[int, int, int]]
    servers: list[ClickHouseServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The first shard's server: where the Distributed tables are queried."""
        return self.servers[0].url

    def start(self, index: int, timeout: float = 60.0) -> ClickHouseServer:
        """Start shard `index` on its ports and data dir (again, after `stop_shard`)."""
        root = self.root / f"shard{index + 1}"
        config = write_config(root, self.name, [tcp for tcp, _, _ in self.ports])
        server = start_clickhouse(
            data_dir=root / "data", timeout=timeout, ports=self.ports[index], config=config
        )
        if index < len(self.servers):
            self.servers[index] = server
        else:
            self.servers.append(server)
        return server

    def stop_shard(self, index: int) -> None:
        self.servers[index].stop()

    def restart(self, index: int) -> ClickHouseServer:
        self.stop_shard(index)
        return self.start(index)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_clickhouse_cluster(shards: int = 2, name: str = CLUSTER) -> ClickHouseCluster:
    """Start `shards` servers on free loopback ports, each knowing the whole cluster."""
    ports = free_ports(3 * shards)
    cluster = ClickHouseCluster(
        name,
        Path(tempfile.mkdtemp(prefix="tutorledger-chc-")),
        [(ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]) for i in range(shards)],
    )
    try:
        for index in range(shards):
            cluster.start(index)
    except BaseException:
        cluster.stop()
        raise
    return cluster
