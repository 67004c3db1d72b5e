"""Settings of the gateway: one frozen pydantic-settings model, env prefix ``LOGFLUME_GATEWAY_``.

The gateway also needs the pipeline's :class:`~logflume.settings.Settings` (broker,
database, topics, the event size limit); both are built once at the entry point
(``logflume gateway``) and passed down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GatewaySettings"]

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
