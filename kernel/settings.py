"""Settings of the logflume services, read once at the entry point and passed down.

Library code never reads ``os.environ``: the CLI builds one :class:`Settings` and hands it
to whatever it runs. This module is the one place that touches the environment, including
what child processes inherit (:func:`child_environment`, :func:`export_for_children`).
``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` keep their conventional names; everything
else is ``LOGFLUME_*``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from producers.contract import DEFAULT_MAX_EVENT_BYTES

__all__ = [
    "GatewaySettings",
    "ProcessorOptions",
    "Settings",
    "Topics",
    "child_environment",
    "export_for_children",
    "settings_problems",
]

LOCAL_DB_USER = "logflume"
LOCAL_DB_NAME = "logflume"


@dataclass(frozen=True, slots=True)
class Topics:
    """Names of the Kafka topics the pipeline uses (architecture section 3)."""

    events: str
    entities: str
    rollups: str
    deadletter: str
    groups: str  # stage 2's contributions to sessions and prompt versions

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            events=f"{prefix}.events",
            entities=f"{prefix}.entities",
            rollups=f"{prefix}.rollups",
            deadletter=f"{prefix}.deadletter",
            groups=f"{prefix}.groups",
        )

    def all(self) -> tuple[str, ...]:
        return (self.events, self.entities, self.rollups, self.deadletter, self.groups)


# -- sections: each reads its own LOGFLUME_<SECTION>_* variables ---------------------------

_MIB = 1024 * 1024


class GatewaySettings(BaseSettings):
    """Configuration of one gateway process; every field is ``LOGFLUME_GATEWAY_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="LOGFLUME_GATEWAY_", frozen=True, extra="ignore", populate_by_name=True
    )

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8300, ge=0, le=65535, description="Port to listen on.")
    max_body_bytes: int = Field(
        default=16 * _MIB, ge=1024, description="Largest request body (a batch of events)."
    )
    max_batch_events: int = Field(
        default=1000, ge=1, le=100_000, description="Events one batch request may carry."
    )
    # Publishing: a 2xx only once Kafka acknowledged the events or the spool fsynced them.
    send_timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="How long a send may take before spooling."
    )
    linger_ms: float = Field(
        default=1.0, ge=0, le=1000, description="Requests arriving within this are sent together."
    )
    publish_max_events: int = Field(
        default=5000, ge=1, description="Events sent to Kafka in one go (across requests)."
    )
    spool_dir: Path | None = Field(
        default=None, description="The durable spool; unset means <LOGFLUME_HOME>/gateway-spool."
    )
    spool_max_bytes: int = Field(default=1024 * _MIB, ge=_MIB, description="Spool size bound.")
    retry_backoff_max_s: float = Field(
        default=5.0, gt=0, description="Longest pause between two attempts to drain the spool."
    )
    # Memory of the process.
    accepted_capacity: int = Field(
        default=100_000, ge=0, description="Accepted-not-yet-stored log ids remembered (pending)."
    )
    accepted_ttl_s: float = Field(
        default=3600.0, gt=0, description="How long an accepted log id answers `pending`."
    )
    key_cache_ttl_s: float = Field(
        default=30.0, ge=0, description="How long a verified API key is trusted without a query."
    )
    node_cache_size: int = Field(
        default=100_000, ge=0, description="Maxim nodes (id -> trace) kept in memory."
    )
    held_sweep_s: float = Field(
        default=2.0,
        ge=0,
        description=(
            "How often held Maxim lines and the work deferred while PostgreSQL was away are "
            "retried (0: never)."
        ),
    )
    held_ttl_s: float = Field(
        default=86_400.0, gt=0, description="Held Maxim lines older than this become dead letters."
    )
    unsaved_ttl_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description=(
            "How long the shared index remembers a save=false log's id and reference id "
            "(table unsaved_logs; afterwards the stored log's save=false answers)."
        ),
    )
    db_pool_max: int = Field(default=8, ge=1, le=200, description="PostgreSQL connections.")
    db_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one query.")
    list_limit_max: int = Field(default=500, ge=1, description="Largest page of a listing.")


class ProcessorOptions(BaseSettings):
    """Options of a processor worker (``LOGFLUME_PROCESSOR_*``)."""

    model_config = SettingsConfigDict(env_prefix="LOGFLUME_PROCESSOR_", frozen=True, extra="ignore")

    state_ttl_s: float = Field(default=7 * 24 * 3600.0, gt=0, description="State TTL.")
    state_quiet_s: float = Field(
        default=300.0,
        ge=0,
        description="A state quiet this long leaves memory for the worker's disk "
        "(processors.cold) until its TTL; 0 keeps every state in memory.",
    )
    state_hot_max: int = Field(
        default=200_000,
        ge=0,
        description="States a stage keeps in memory per worker: past it, each sweep moves the "
        "longest-quiet ones to the worker's disk before state_quiet_s (0: no bound). Memory "
        "then stays bounded whatever the rate; between sweeps it grows by what they add.",
    )
    gc_full_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="Period of the worker's full garbage collection: between them the "
        "collector walks only what the current output window allocated (kernel.runtime.Heap).",
    )
    ttl_sweep_interval_s: float = Field(
        default=60.0, gt=0, description="Period of the sweep that moves and expires states."
    )
    worker_name: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Names the worker's data folder and Kafka client id.",
    )
    static_membership: bool = Field(
        default=False,
        description="Join the group as a static member (KIP-345) named by worker_name: a "
        "worker restarted under the same name within the session timeout gets its partitions "
        "back without a rebalance. The name must then be stable and unique per worker (a "
        "second worker of the same name is fenced).",
    )
    web_port: int | None = Field(
        default=None, ge=1, le=65535, description="Faust's web server port; unset disables it."
    )
    log_level: str = Field(default="warning", description="Level of the worker's logging.")
    session_timeout_s: float = Field(
        default=10.0, ge=1, description="A silent (killed) worker loses its partitions after this."
    )
    heartbeat_interval_s: float = Field(default=1.0, gt=0, description="Group heartbeat period.")
    rebalance_timeout_s: float = Field(default=30.0, gt=0, description="Rejoin deadline.")
    commit_interval_s: float = Field(default=2.0, gt=0, description="Offset commit period.")
    producer_linger_s: float = Field(default=0.005, ge=0, description="Producer batching delay.")
    fetch_wait_ms: int = Field(
        default=50,
        ge=1,
        le=1500,
        description="Longest wait of a fetch at the broker for data. Faust fixes it at 1,500 "
        "ms, and aiokafka keeps one fetch in flight per broker: a stage's input that arrived "
        "after the fetch was sent waited for it, up to 1.5 s per stage.",
    )
    window_records: int = Field(
        default=500, ge=1, description="A stage flushes its outputs after this many records..."
    )
    window_ms: float = Field(
        default=50.0, gt=0, description="...or this long after the window's first record."
    )
    snapshot_interval_s: float = Field(
        default=30.0,
        ge=0,
        description="Period of the local state snapshots a restarted worker recovers from "
        "(0: none, recover from the whole changelog).",
    )
    stall_s: float = Field(
        default=60.0,
        gt=0,
        description="A worker whose assigned partitions have work (lag > 0) but whose "
        "position and committed offset did not move for this long (its committed offset "
        "alone: twice this long), or whose event loop did not run for this long, exits with "
        "status 75 (processors.watchdog).",
    )
    send_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="The bound of every send and delivery of the stages (outputs, dead "
        "letters, changelog writes, a window's completion): past it the worker exits with "
        "status 70 without committing.",
    )
    # Test-only fault injection (processors.faults): a stage wedges on an await that never
    # returns, once, after this many records.
    fault_wedge: Literal["stream", "send", "loop"] | None = Field(
        default=None, description="Test only: where a stage wedges (stream, send or loop)."
    )
    fault_wedge_after: int = Field(default=1, ge=0, description="Test only: after N records.")
    fault_wedge_marker: Path | None = Field(
        default=None, description="Test only: wedge only if this file does not exist yet."
    )


class Settings(BaseSettings):
    """Configuration of one logflume process; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="LOGFLUME_", frozen=True, extra="ignore", populate_by_name=True
    )

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "LOGFLUME_KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Bootstrap servers of a running broker; unset means the local broker of `up`.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "LOGFLUME_DATABASE_URL"),
        description="DSN of a running PostgreSQL; unset means the local cluster of `up`.",
    )
    home: Path = Field(
        default=Path(".logflume"),
        description="Folder for the local services' jars, data, logs and pid files.",
    )
    kafka_port: int = Field(default=19092, ge=1, le=65535, description="Local broker port.")
    kafka_controller_port: int = Field(
        default=19093, ge=1, le=65535, description="Local KRaft controller port."
    )
    kafka_heap: str = Field(default="768m", description="Java heap of the local broker.")
    kafka_jvm_options: str = Field(
        default="-XX:+UseG1GC -XX:TieredStopAtLevel=1",
        description="JVM options of the local broker, space-separated (the heap is "
        "kafka_heap). C1 only by default: on 2 cores C2's compiler threads took more CPU "
        "than the broker's requests for its first minutes, while C1's code serves them "
        "for ~10-15% more; a broker that runs for hours: -XX:+UseG1GC (README, 'The local "
        "broker's JIT').",
    )
    kafka_brokers: int | None = Field(
        default=None,
        ge=1,
        le=9,
        description="Local brokers `up` starts (KRaft, each a broker and a controller); node "
        "N listens on kafka_port + 100 (N - 1) and kafka_controller_port + 100 (N - 1). "
        "Unset: as many as `up` last formatted in <home> (1 for a new home).",
    )
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="Replicas of every topic logflume creates (changelogs included); unset: "
        "min(3, brokers in the cluster). With 3 or more, min.insync.replicas is 2.",
    )
    postgres_port: int = Field(default=15432, ge=1, le=65535, description="Local Postgres port.")
    topic_prefix: str = Field(
        default="logflume", pattern=r"^[A-Za-z0-9._-]{1,100}$", description="Prefix of topics."
    )
    partitions: int = Field(default=12, ge=1, le=1024, description="Partitions per topic.")
    events_retention_ms: int = Field(
        default=30 * 24 * 3600 * 1000,
        ge=-1,
        description=(
            "Retention of the raw events topic, applied when it is created: how long an "
            "event (and any payload in it) stays in Kafka; -1 keeps history forever."
        ),
    )
    max_event_bytes: int = Field(
        default=DEFAULT_MAX_EVENT_BYTES, ge=1024, description="Largest accepted event, in bytes."
    )
    sink_group: str = Field(default="logflume-sink", description="Consumer group of the sinks.")
    sink_instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="A stable id of this sink across restarts: it joins its group as a "
        "static member (KIP-345) and a restart within the session timeout takes its "
        "partitions back without a rebalance. Unique per sink.",
    )
    sink_batch_values: int = Field(
        default=5000, ge=1, description="A sink batch ends at this many stage outputs..."
    )
    sink_linger_ms: int = Field(
        default=200, ge=0, description="...or when its first record is this old."
    )
    sink_fetch_wait_ms: int = Field(
        default=50,
        ge=1,
        le=1500,
        description="Longest wait of the sink's fetch at the broker for data (aiokafka's 500 "
        "ms default delayed stage outputs that arrived after the fetch was sent).",
    )
    sink_retry_max_s: float = Field(
        default=10.0, gt=0, description="Longest pause between retries while Postgres is down."
    )
    startup_timeout_s: float = Field(
        default=120.0, gt=0, description="How long `up` waits for each service to answer."
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Base port of the stages' Prometheus /metrics (0: off); see kernel.metrics.",
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address of the metrics ports.")
    metrics_instance: int = Field(
        default=0, ge=0, le=9, description="Which of several same-role processes this is."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="text: human lines; json: one JSON object per line."
    )
    # The sections of the roles (their own variables, LOGFLUME_GATEWAY_* and
    # LOGFLUME_PROCESSOR_*), read when the settings are built, like the fields above.
    gateway: GatewaySettings = Field(
        default_factory=GatewaySettings, description="The gateway's section."
    )
    processor: ProcessorOptions = Field(
        default_factory=ProcessorOptions, description="The processor workers' section."
    )

    @property
    def kafka_is_external(self) -> bool:
        """True when the environment points at a broker that logflume must not manage."""
        return self.kafka_bootstrap_servers is not None

    @property
    def postgres_is_external(self) -> bool:
        return self.database_url is not None

    @property
    def bootstrap_servers(self) -> str:
        if self.kafka_bootstrap_servers:
            return self.kafka_bootstrap_servers
        return ",".join(f"127.0.0.1:{port}" for port, _ in self.kafka_node_ports())

    @property
    def local_brokers(self) -> int:
        """How many local nodes: ``kafka_brokers``, else what ``up`` recorded in <home>."""
        if self.kafka_brokers is not None:
            return self.kafka_brokers
        return recorded_brokers(self.home)

    def kafka_node_port(self, node: int) -> tuple[int, int]:
        """``(broker port, controller port)`` of local node ``node`` (1-based): the base
        ports + 100 (node - 1)."""
        step = 100 * (node - 1)
        return self.kafka_port + step, self.kafka_controller_port + step

    def kafka_node_ports(self) -> list[tuple[int, int]]:
        """``(broker port, controller port)`` of each local node, node 1 first."""
        return [self.kafka_node_port(node) for node in range(1, self.local_brokers + 1)]

    @property
    def dsn(self) -> str:
        """The database DSN. Secret: never log it, use :meth:`redacted_dsn`."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return (
            f"postgresql://{LOCAL_DB_USER}:{LOCAL_DB_USER}@127.0.0.1:{self.postgres_port}"
            f"/{LOCAL_DB_NAME}"
        )

    @property
    def redacted_dsn(self) -> str:
        """The DSN with its password masked, for status output and logs."""
        return redact_dsn(self.dsn)

    @property
    def max_record_bytes(self) -> int:
        """Largest Kafka record (a batch of events): twice the largest event."""
        return 2 * self.max_event_bytes

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.topic_prefix)

    @property
    def processors_group(self) -> str:
        """The processors' Faust app id: their consumer group and the prefix of their
        changelog topics."""
        return f"{self.topic_prefix}.processors"


def redact_dsn(dsn: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return dsn
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else dsn


CLUSTER_FILE = "kafka/cluster.properties"


def recorded_brokers(home: Path) -> int:
    """The node count ``logflume up`` recorded when it formatted the local cluster in
    ``home`` (``<home>/kafka/cluster.properties``); 1 when none was recorded."""
    try:
        text = (home.expanduser() / CLUSTER_FILE).read_text(encoding="utf-8")
    except OSError:
        return 1
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "brokers" and value.strip().isdigit():
            return int(value.strip())
    return 1


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child process: this process's own, plus ``extra`` (which wins)."""
    return {**os.environ, **extra}


def export_for_children(values: Mapping[str, str]) -> None:
    """Set variables in this process's environment for children that build their own
    settings from it (uvicorn's worker processes)."""
    os.environ.update(values)


_SECTION_PREFIXES = {
    "GatewaySettings": "LOGFLUME_GATEWAY_",
    "ProcessorOptions": "LOGFLUME_PROCESSOR_",
}


def settings_problems(exc: ValidationError) -> str:
    """One line naming each bad setting by its variable (``LOGFLUME_GATEWAY_PORT: ...``,
    ``LOGFLUME_SINK_LINGER_MS: ...``); a field given by an alias is named by it already."""
    prefix = _SECTION_PREFIXES.get(exc.title)
    parts = []
    for error in exc.errors():
        loc = error["loc"]
        where = ".".join(map(str, loc))
        if prefix is not None:
            where = prefix + where.upper()
        elif exc.title == Settings.__name__ and len(loc) == 1 and loc[0] in Settings.model_fields:
            where = f"LOGFLUME_{str(loc[0]).upper()}"  # the top level's own prefix
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
