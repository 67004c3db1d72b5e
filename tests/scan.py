"""Looking for a string everywhere the pipeline keeps data: every Kafka topic of a
deployment (raw, derived, dead letters, the processors' changelogs), every PostgreSQL
table, files (spools, archives). The save=false and deletion tests use it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import zstandard
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kernel.settings import Settings

__all__ = ["archive_text", "files_bytes", "table_texts", "topic_bytes"]


async def topic_bytes(settings: Settings) -> dict[str, bytes]:
    """Every record (keys and values) of every topic under the deployment's prefix,
    changelogs included, read from the start to the current end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    partitions = {d["topic"]: [p["partition"] for p in d["partitions"]] for d in described}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    found: dict[str, bytes] = {}
    try:
        for name in sorted(names):
            tps = [TopicPartition(name, p) for p in partitions[name]]
            ends = await consumer.end_offsets(tps)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            chunks: list[bytes] = []
            async with asyncio.timeout(60):
                while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                    for records in (await consumer.getmany(timeout_ms=200)).values():
                        chunks += [r.key or b"" for r in records]
                        chunks += [r.value or b"" for r in records]
            found[name] = b"\n".join(chunks)
    finally:
        await consumer.stop()
    return found


async def table_texts(dsn: str) -> dict[str, str]:
    """Every row of every table of the public schema, as PostgreSQL's text of the row."""
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        tables = [r[0] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]  # fmt: skip
        return {t: "\n".join(r[0] for r in await conn.fetch(f'SELECT x::text FROM "{t}" x'))
                for t in tables}  # fmt: skip
    finally:
        await conn.close()


def files_bytes(root: Path) -> bytes:
    """The bytes of every file under ``root``."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def archive_text(path: Path) -> str:
    """An export archive, decompressed."""
    with path.open("rb") as raw:
        return zstandard.ZstdDecompressor().stream_reader(raw).read().decode()
