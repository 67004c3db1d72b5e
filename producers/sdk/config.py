"""Settings of the SDK client: one frozen pydantic-settings model, env prefix ``LOGFLUME_SDK_``.

The application builds it once (``SDKSettings()`` reads the environment, or pass values)
and hands it to :class:`~producers.sdk.Client`. ``KAFKA_BOOTSTRAP_SERVERS`` keeps its
conventional name, as in the services' settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from producers.contract import DEFAULT_MAX_EVENT_BYTES
from producers.contract.types import MAX_PROJECT_LENGTH, PROJECT_PATTERN

__all__ = ["Compression", "FsyncPolicy", "OverflowPolicy", "SDKSettings", "default_spool_root"]

Compression = Literal["lz4", "zstd", "gzip", "none"]
FsyncPolicy = Literal["never", "batch", "always"]
OverflowPolicy = Literal["spool", "drop"]

_KIB = 1024
_MIB = 1024 * 1024


def default_spool_root() -> Path:
    """``~/.cache/logflume/spool``."""
    return Path.home() / ".cache" / "logflume" / "spool"


class SDKSettings(BaseSettings):
    """Configuration of one SDK client. Every field can be set as ``LOGFLUME_SDK_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="LOGFLUME_SDK_", frozen=True, extra="ignore", populate_by_name=True
    )

    # -- where events go ----------------------------------------------------------------------
    bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "LOGFLUME_SDK_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma separated.",
    )
    topic: str = Field(
        default="logflume.events",
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="The raw events topic (architecture section 3).",
    )
    project: Annotated[str, Field(pattern=PROJECT_PATTERN, max_length=MAX_PROJECT_LENGTH)] = Field(
        default="default", description="Project stamped on every event."
    )
    client_id: str = Field(default="logflume-sdk", description="Kafka client id.")
    strict: bool = Field(
        default=False,
        description="Validate at the call and raise ValueError naming the field (slower calls).",
    )
    fast_validation: bool = Field(
        default=True,
        description=(
            "Check log and log_update bodies with the SDK's msgspec mirror of the contract "
            "first (~4x cheaper); what it does not accept is judged by the contract's own "
            "models. False: the contract's models only."
        ),
    )

    # -- the producer -------------------------------------------------------------------------
    compression: Compression = Field(
        default="zstd",
        description=(
            "Record batch compression (lz4/zstd need the cramjam package). zstd by default: "
            "cramjam compresses zstd without the GIL, lz4 (level 9) holds it for ~15 ms per "
            "batch, a pause of every application thread."
        ),
    )
    linger_ms: int = Field(default=5, ge=0, le=60_000, description="aiokafka linger.")
    send_timeout_s: float = Field(
        default=15.0, gt=0, le=600, description="How long a send may take before it is spooled."
    )
    record_max_bytes: int = Field(
        default=256 * _KIB, ge=4 * _KIB, le=4 * _MIB, description="Largest packed record value."
    )
    record_max_events: int = Field(default=500, ge=1, le=100_000, description="Events per record.")
    max_request_bytes: int = Field(
        default=_MIB + 64 * _KIB, ge=64 * _KIB, description="aiokafka max_request_size."
    )

    # -- the worker and the in-memory queue ----------------------------------------------------
    flush_interval_ms: int = Field(
        default=50, ge=1, le=60_000, description="The worker wakes at least this often."
    )
    batch_max_events: int = Field(
        default=2000, ge=1, le=100_000, description="Events the worker encodes and sends at once."
    )
    worker_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Linux: the worker thread runs this much nicer than the thread that "
        "created the client (nice is per thread there), and in the batch scheduling class "
        "(SCHED_BATCH: it never preempts a running app thread when it wakes), so that when a "
        "CPU is short the OS runs the app's threads first and the worker's sends wait, not "
        "the app's calls (0: the same priority and class; elsewhere ignored).",
    )
    max_queue_events: int = Field(
        default=100_000, ge=1, description="Events the caller-side queue holds before overflow."
    )
    max_queue_bytes: int = Field(
        default=64 * _MIB, ge=_KIB, description="Bytes (by encoded size) of that queue."
    )
    max_inflight_bytes: int = Field(
        default=32 * _MIB, ge=_KIB, description="Encoded bytes sent but not yet acknowledged."
    )
    overflow: OverflowPolicy = Field(
        default="spool",
        description="spool: what memory cannot hold goes to the disk spool; drop: it is dropped "
        "(counted by reason) and there is no spool.",
    )

    # -- the disk spool --------------------------------------------------------------------------
    spool_dir: Path | None = Field(
        default=None,
        description="Spool folder; unset means <user cache>/logflume/spool/<topic>.",
    )
    spool_max_bytes: int = Field(default=1024 * _MIB, ge=_KIB, description="Spool size bound.")
    spool_segment_bytes: int = Field(
        default=16 * _MIB, ge=_KIB, description="Size at which a spool segment is rotated."
    )
    spool_fsync: FsyncPolicy = Field(
        default="batch", description="fsync after never / every written batch / every event."
    )

    # -- behaviour -----------------------------------------------------------------------------
    retry_backoff_max_s: float = Field(
        default=5.0, gt=0, le=300, description="Cap of the jittered backoff between retries."
    )
    close_timeout_s: float = Field(
        default=5.0, ge=0, le=600, description="What close() at interpreter exit may take."
    )
    warn_interval_s: float = Field(
        default=60.0, ge=0, description="At most one warning per reason in this interval."
    )
    max_event_bytes: int = Field(
        default=DEFAULT_MAX_EVENT_BYTES, ge=_KIB, description="Largest accepted event."
    )
    unsaved_capacity: int = Field(
        default=100_000,
        ge=0,
        description=(
            "save=false logs remembered (by id and reference id) so that their updates lose "
            "their payload fields at the call too (~150 bytes each)."
        ),
    )
    unsaved_ttl_s: float = Field(
        default=86_400.0, gt=0, description="How long a save=false log is remembered."
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name at least one host:port")
        return value

    def resolved_spool_dir(self) -> Path | None:
        """The spool folder, or None when overflow is ``drop`` (no spool at all)."""
        if self.overflow == "drop":
            return None
        return self.spool_dir or default_spool_root() / self.topic
