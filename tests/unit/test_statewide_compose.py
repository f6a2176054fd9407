"""Static checks of the statewide profile (docker-compose.statewide.yml and its ClickHouse
configs). No Docker here: this checks the configuration is coherent, not that it runs."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from tutorledger.infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.statewide.yml"
CLICKHOUSE_XML = ROOT / "infra" / "docker" / "statewide" / "clickhouse.xml"
KEEPER_XML = ROOT / "infra" / "docker" / "statewide" / "keeper.xml"
_VAR = re.compile(r"\$\{(\w+)(?::[-?]([^}]*))?\}")


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def env(name: str) -> dict[str, str]:
    """A service's environment with `${X:?…}` as a placeholder and `${X:-d}` as d."""
    raw = services()[name]["environment"]
    return {
        k: _VAR.sub(lambda m: "pw" if "?" in m[0] else m[2] or "", str(v)) for k, v in raw.items()
    }


def test_every_service_is_in_the_statewide_profile_on_a_pinned_image() -> None:
    for name, spec in services().items():
        assert spec.get("profiles") == ["statewide"], name
        image = spec["image"]
        assert ":" in image and not image.endswith(":latest"), name


def test_kafka_keeps_every_write_on_two_of_three_brokers() -> None:
    brokers = [n for n in services() if re.fullmatch(r"kafka-\d", n)]
    assert len(brokers) == 3
    for name in brokers:
        settings = env(name)
        assert settings["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert settings["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert settings["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    init = "\n".join(services()["kafka-init"]["command"])
    assert "--replication-factor 3" in init and "min.insync.replicas=2" in init


@pytest.mark.parametrize("name", ["api", "relay", "projector"])
def test_apps_name_the_cluster_the_clickhouse_config_defines(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env(name).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    clusters = ET.parse(CLICKHOUSE_XML).getroot().find("remote_servers")
    assert clusters is not None
    cluster = clusters.find(settings.clickhouse_cluster)
    assert cluster is not None, settings.clickhouse_cluster
    hosts = [h.text for h in cluster.iter("host")]
    assert hosts and set(hosts) <= set(services())
    assert f"@{hosts[0]}:" in settings.clickhouse  # the front is a server of the cluster
    assert len(settings.kafka_bootstrap) == 3


def test_keeper_is_a_quorum_of_three_services() -> None:
    raft = ET.parse(KEEPER_XML).getroot().find("keeper_server/raft_configuration")
    assert raft is not None
    hosts = [h.text for h in raft.iter("hostname")]
    assert len(hosts) == 3 and set(hosts) <= set(services())
    zookeeper = ET.parse(CLICKHOUSE_XML).getroot().find("zookeeper")
    assert zookeeper is not None
    assert sorted(h.text or "" for h in zookeeper.iter("host")) == sorted(h or "" for h in hosts)
