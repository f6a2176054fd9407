"""One settings object, read from the environment (docs/contract.md §3) and passed down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tutorledger.domain.district import DistrictProfile, check_zone, parse_profiles

StoreKind = Literal["sqlite", "postgresql"]
ProjectionKind = Literal["chdb", "clickhouse"]


class Settings(BaseSettings):
    """Every knob of a tutorledger process; entry points build it, nothing else reads env."""

    model_config = SettingsConfigDict(env_prefix="TUTORLEDGER_", extra="ignore")

    event_store: str = Field(
        default="sqlite:///./var/ledger.db",
        description="Event store URL: sqlite:///path or postgresql://user:pw@host:port/db",
    )
    stream: str = Field(
        default="embedded",
        description="'embedded' (projector follows the ledger in-process) or kafka://host:port",
    )
    clickhouse: str = Field(
        default="chdb://./var/projections",
        description="Projection store: chdb://path or clickhouse://user:pw@host:port/db",
    )
    clickhouse_cluster: str = Field(
        default="",
        description="Cluster mode: the remote_servers cluster (of the `clickhouse` server) whose "
        "shards hold the projections, sharded by district; empty: one node (docs/scaling.md)",
    )
    api_keys_file: Path | None = Field(default=None, description="JSON list of API keys")
    district_tz: str = Field(
        default="America/New_York", description="Time zone for districts with none set"
    )
    districts_file: Path | None = Field(
        default=None,
        description='JSON {district_id: {"time_zone": "America/Chicago", "school_hours": '
        '{"days": [1,2,3,4,5], "start": "08:00", "end": "15:30"}}}; read once at startup',
    )
    kafka_topic: str = Field(default="tutorledger.events")
    kafka_dead_letter_topic: str = Field(default="tutorledger.events.dlq")
    kafka_group: str = Field(default="tutorledger-projector")
    kafka_partitions: int = Field(default=6, ge=1)
    kafka_fetch_wait_ms: int = Field(
        default=5000,
        ge=100,
        description="Longest a fetch may wait at the broker (fetch.max.wait.ms). Kafka answers "
        "as soon as a record is there; tansu on S3 lists a partition's stored batches within "
        "this wait and answers empty when it runs out, so a short wait starves a long partition",
    )
    var_dir: Path = Field(default=Path("./var"), description="Where embedded files live")
    erasure_journal: Path | None = Field(
        default=None,
        description="Append-only file of erasures (tokens, never ids), kept apart from the "
        "store and its backups so `restore` destroys keys erased after a backup again; "
        "unset: <var_dir>/erasure-journal.jsonl",
    )
    projector_batch_size: int = Field(default=5000, ge=1)
    projector_poll_seconds: float = Field(default=0.2, gt=0)
    projector_stall_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A Kafka projector whose assigned partition stays behind its end offset "
        "without yielding a record this long logs `projector stalled` and exits (code 3) so "
        "its supervisor restarts it",
    )
    log_level: str = Field(default="INFO")
    session_secret: SecretStr | None = Field(
        default=None,
        description="Signs dashboard sign-in cookies; unset: a random secret per process "
        "(sessions end at restart). Set the same value on every API replica.",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Request bodies above this answer 413"
    )
    roster_max_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="A roster's CSV files, unpacked, above this: refused (413, nothing recorded)",
    )
    roster_max_rows: int = Field(
        default=2_000_000,
        ge=1,
        description="A roster's CSV records, all files together, above this: refused (413)",
    )
    max_range_days: int = Field(
        default=1096,
        ge=7,
        description="Longest date range a metric, page or CSV answers (422 range_too_long "
        "beyond): weekly rows and the reach trend grow with it. A range open on one side is "
        "measured to or from today",
    )
    answer_cache_rows: int = Field(
        default=200_000,
        ge=0,
        description="Rows of answers at a fixed ledger position kept in memory and reused "
        "while the read models' rows at or below it are unchanged (0: none kept)",
    )
    figure_requests_per_key: int = Field(
        default=4, ge=1, description="Figure requests one key may have running (429 beyond)"
    )
    figure_requests: int = Field(
        default=16,
        ge=1,
        le=32,
        description="Figure requests the process runs at once (503 server_busy beyond); kept "
        "below the 40 worker threads sync routes share, so other routes always find one",
    )
    figure_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Query time one figure request may spend in ClickHouse (503 query_timeout "
        "beyond; each query runs with max_execution_time = what is left)",
    )
    _districts: dict[str, DistrictProfile] = PrivateAttr(default_factory=dict)

    @field_validator("event_store")
    @classmethod
    def _check_store(cls, value: str) -> str:
        scheme = urlparse(value).scheme
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("event_store must be sqlite:///… or postgresql://…")
        return value

    @field_validator("stream")
    @classmethod
    def _check_stream(cls, value: str) -> str:
        if value != "embedded" and urlparse(value).scheme != "kafka":
            raise ValueError("stream must be 'embedded' or kafka://host:port[,host:port]")
        return value

    @field_validator("clickhouse")
    @classmethod
    def _check_clickhouse(cls, value: str) -> str:
        if urlparse(value).scheme not in ("chdb", "clickhouse"):
            raise ValueError("clickhouse must be chdb://path or clickhouse://host:port/db")
        return value

    @field_validator("district_tz")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        return check_zone(value)

    @model_validator(mode="after")
    def _load_districts(self) -> Settings:
        """Read the districts file now, so a bad zone name stops the process at startup."""
        if self.districts_file is not None:
            try:
                raw = json.loads(self.districts_file.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"districts file {self.districts_file}: {exc}") from None
            try:
                self._districts = parse_profiles(raw, self.district_tz)
            except ValueError as exc:
                raise ValueError(f"districts file {self.districts_file}: {exc}") from None
        return self

    def district(self, district_id: str) -> DistrictProfile:
        """The district's time zone and school hours (defaults when it is not configured)."""
        profile = self._districts.get(district_id)
        return profile or DistrictProfile(time_zone=self.district_tz)

    def configured_districts(self) -> list[str]:
        """The districts named in the districts file."""
        return sorted(self._districts)

    @property
    def erasure_journal_path(self) -> Path:
        return self.erasure_journal or self.var_dir / "erasure-journal.jsonl"

    @property
    def store_kind(self) -> StoreKind:
        return "sqlite" if self.event_store.startswith("sqlite") else "postgresql"

    @property
    def projection_kind(self) -> ProjectionKind:
        return "chdb" if self.clickhouse.startswith("chdb") else "clickhouse"

    @property
    def embedded_stream(self) -> bool:
        return self.stream == "embedded"

    @property
    def kafka_bootstrap(self) -> list[str]:
        """Broker addresses of a kafka:// stream URL (comma-separated hosts allowed)."""
        netloc = self.stream.removeprefix("kafka://").strip("/")
        return [h for h in netloc.split(",") if h]
