"""The one Faust app of the processors, its options, and the expiring state table.

Choices (architecture sections 3-4; the report of issue 4 gives the evidence):

- Processing guarantee ``at_least_once``. Faust's ``exactly_once`` is not reliable with
  faust-streaming 0.15 (crash at startup, duplicates despite transactions, crashes on
  rebalance: faust-streaming issues 440, 517, 323, 177). Offsets are committed only after
  Faust flushed its producer (outputs and changelog writes), so a killed worker re-runs the
  records after its last commit; the reducers absorb the replay (dedup by ``event_id``).
- Store ``memory://`` for the active states, with two tiers of our own beside it: the quiet
  states on the worker's disk (:mod:`processors.cold`) and local snapshots of the memory
  tier (:mod:`processors.snapshots`), so a worker that gets a partition reads only the
  changelog written since its snapshot; without a snapshot, both tiers are rebuilt from the
  compacted changelog. Standby replicas are off (a memory store cannot skip recovery with
  them). Faust's RocksDB store would cost a lookup and an encode on every access.
- Topics: Faust declares nothing (``topic_allow_declare=False``, no leader topic); the
  worker creates the changelog topics itself with the pipeline's partition count before
  starting (:mod:`processors.worker`), and the pipeline's topics come from ``logflume up``.
- Values stay bytes (``value_serializer='raw'``); the agents decode with orjson.

States in two tiers, and their expiry. Faust tables have no TTL. An :class:`ExpiringTable`
keeps a state in memory while it is active; the sweep moves a state whose ``last_ts`` (epoch
seconds, carried by every state) is more than ``quiet_s`` behind its partition's stream time
(the latest ``last_ts`` of the partition, capped by the wall clock) to the worker's disk
(:mod:`processors.cold`), where lookups still find it, and deletes a state more than
``ttl_s`` behind, with a tombstone on the changelog (so recovery forgets the key too), sent
only for partitions this worker owns; states of partitions it no longer owns are dropped
locally after each rebalance. When history is replayed, states move and expire relative to
the replayed events, not to today.

A late event for an expired entity (more than ``ttl_s`` after its previous one) starts a
fresh state: duplicates of events from before the expiry are not detected, and the
canonical entity re-emitted downstream restarts its version counter (the sinks handle that).
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import faust
import orjson
from aiokafka.structs import RecordMetadata
from faust.serializers.codecs import Codec
from faust.types import TP, EventT

from kernel.settings import ProcessorOptions, Settings
from processors.codec import RECORD_OVERHEAD_BYTES
from processors.cold import ColdStore
from processors.outcome import Lookup
from processors.snapshots import TableSnapshot, load_partition, remove_temporaries

__all__ = [
    "ExpiringTable",
    "ProcessorOptions",
    "WrittenBatch",
    "app_id",
    "check_delivered",
    "cold_dir",
    "fatal",
    "make_app",
    "snapshot_dir",
    "worker_datadir",
]

log = logging.getLogger(__name__)

_SWEEP_CHUNK = 5000  # keys examined between two yields to the event loop
EX_SOFTWARE = 70  # exit status of a worker ended by a failed send


class OrjsonCodec(Codec):
    """Faust codec for table values: JSON via orjson (dicts in, dicts out)."""

    def _dumps(self, s: Any) -> bytes:
        return orjson.dumps(s)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


def app_id(settings: Settings) -> str:
    """The Faust app id: the consumer group and the prefix of the changelog topics."""
    return settings.processors_group


def make_app(settings: Settings, options: ProcessorOptions | None = None) -> faust.App:
    """The processors' app, configured from the settings; agents are added by the stages."""
    options = options or settings.processor
    brokers = [f"kafka://{h.strip()}" for h in settings.bootstrap_servers.split(",") if h.strip()]
    datadir = worker_datadir(settings, options)
    return faust.App(
        app_id(settings),
        broker=brokers,
        broker_client_id=f"{app_id(settings)}-{options.worker_name}",
        autodiscover=False,
        store="memory://",
        processing_guarantee="at_least_once",
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,  # unused: kernel.topics creates topics
        topic_allow_declare=False,
        topic_disable_leader=True,
        table_standby_replicas=0,
        web_enabled=options.web_port is not None,
        web_port=options.web_port or 6066,
        web_host="127.0.0.1",
        broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=options.heartbeat_interval_s,
        broker_rebalance_timeout=options.rebalance_timeout_s,
        broker_commit_interval=options.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=(
            f"{app_id(settings)}-{options.worker_name}" if options.static_membership else None
        ),
        consumer_max_fetch_size=max(settings.max_record_bytes, 1024**2),
        producer_max_request_size=settings.max_record_bytes + RECORD_OVERHEAD_BYTES,
        producer_max_batch_size=256 * 1024,
        producer_linger=options.producer_linger_s,
        producer_acks=-1,
        worker_redirect_stdouts=False,
    )


def snapshot_dir(settings: Settings) -> Path:
    """Where the workers of one home folder keep their state snapshots (shared: a worker
    that gets a partition starts from the snapshot of the one that had it)."""
    return settings.home.expanduser().resolve() / "processors" / "snapshots"


def cold_dir(settings: Settings) -> Path:
    """Where the workers of one home folder keep their cold states (:mod:`processors.cold`),
    shared like the snapshots they go with."""
    return settings.home.expanduser().resolve() / "processors" / "cold"


def worker_datadir(settings: Settings, options: ProcessorOptions) -> Path:
    """Each worker's own folder (Faust wants one even with a memory store)."""
    return settings.home.expanduser().resolve() / "processors" / options.worker_name


def check_delivered(fut: asyncio.Future[Any]) -> None:
    """Done-callback of every record the processors send: a failed send ends the worker."""
    if fut.cancelled():
        return  # the producer is stopping; what it did not send is not committed either
    exc = fut.exception()
    if exc is not None:
        fatal(exc)


def fatal(exc: BaseException, what: str = "a processor record could not be sent") -> NoReturn:
    """End the worker at once, without committing offsets: Faust would commit the offsets
    of records whose outputs or state were not sent. At-least-once re-runs them."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    log.critical("%s (%s); exiting without commit", what, reason)
    logging.shutdown()
    os._exit(EX_SOFTWARE)


@dataclass(frozen=True, slots=True)
class WrittenBatch:
    """A batch of changelog records handed to the producer: its delivery future (the
    metadata of its first record) and how many records it holds."""

    future: asyncio.Future[RecordMetadata]
    records: int


class ExpiringTable(faust.Table):
    """A table of JSON dict states that expire ``ttl_s`` after their ``last_ts``.

    Keys are strings (UTF-8 on the changelog), values dicts (orjson). Writes must replace
    values (``table[key] = state``): an in-place change never reaches the changelog.

    A write updates the table at once; its changelog record is taken with the output window
    it belongs to (:meth:`take_writes`) and sent by :meth:`send_writes` once that window's
    outputs are delivered and before its records are acknowledged, so before their offsets
    can be committed. Expired states' tombstones wait for the next flush the same way. Writes
    of one key in between are coalesced: only the last value (or tombstone) is sent, so a
    state touched by many records of a window costs one changelog record, not one per
    record. The sends go straight to the producer instead of through Faust's producer
    buffer, which costs a future, a queue hop and a wake-up per write and made table writes
    the bottleneck (architecture section 4). Faust flushes the producer before committing offsets.
    """

    def __init__(
        self,
        app: faust.App,
        *,
        ttl_s: float,
        source_topic: str,
        snapshots: Path | None = None,
        quiet_s: float = 0.0,
        hot_max: int = 0,
        cold: Path | None = None,
        send_timeout_s: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, key_type=str, **kwargs)
        self.key_serializer = "raw"
        self.value_serializer = OrjsonCodec()
        self.ttl_s = ttl_s
        self.source_topic = source_topic
        self.snapshots = snapshots  # the folder of the snapshots (processors.snapshots)
        # States quiet for quiet_s move to the cold tier in the folder ``cold``.
        self.quiet_s = quiet_s if cold is not None else 0.0
        # At most this many states in memory after a sweep (0: no bound; needs the cold tier).
        self.hot_max = hot_max if self.quiet_s else 0
        self._cold_folder = cold
        self.expired_total = 0
        self.demoted_total = 0
        self._stream_time: dict[int, float] = {}  # per partition, the latest last_ts seen
        self._unsent: dict[Any, tuple[int, Any]] = {}  # key -> (partition, value or None)
        # Writes taken by a window and not yet acknowledged by Kafka: their states stay in
        # memory until then (see _sweep_chunk).
        self._in_flight: list[dict[Any, tuple[int, Any]]] = []
        self._send_lock = asyncio.Lock()  # the agent and the expiry sweep send in turn
        self.send_timeout_s = send_timeout_s  # bounds send_writes (waiting for buffer room)
        # Per changelog partition: the offset of the last write of this worker known to be
        # acknowledged, and the offset of the snapshot loaded at the last assignment.
        self.durable_offsets: dict[int, int] = {}
        self._loaded_offsets: dict[int, int] = {}

    def info(self) -> Mapping[str, Any]:
        return {**super().info(), "ttl_s": self.ttl_s, "source_topic": self.source_topic}

    @cached_property
    def cold(self) -> ColdStore | None:
        """The cold tier (None when every state stays in memory)."""
        if not self.quiet_s or self._cold_folder is None:
            return None
        return ColdStore(self._cold_folder, self.changelog_topic.get_topic_name())

    def lookup_in(self, partition: int) -> Lookup:
        """The lookup of the stages for a record of ``partition``: a key's state, hot, else
        cold, else None. A cold state found here becomes hot when the stage writes it back.
        Bound to the record's partition, so a miss in memory (every new key) goes straight
        to that partition's cold store instead of asking Faust for the partition. For the
        duration of one reduce: a rebalance may close the store afterwards."""
        states = self._states
        cold = self.cold
        store = None if cold is None else cold.store(partition)
        if store is None:
            return states.get
        get_cold = store.get

        def lookup(key: str) -> dict[str, Any] | None:
            state = states.get(key)
            return get_cold(key) if state is None else state  # type: ignore[no-any-return]

        return lookup

    @cached_property
    def _partition_of(self) -> dict[Any, int]:
        # The memory store already maps the keys it recovered to their partition (and uses
        # the map to drop revoked keys); share that map and keep it complete for live writes.
        shared = getattr(self.data, "_key_partition", None)
        return shared if isinstance(shared, dict) else {}

    def on_key_set(self, key: Any, value: Any) -> None:
        partition = self.partition_for_key(key)  # the partition of the record being processed
        assert partition is not None
        self._partition_of[key] = partition
        self._unsent[key] = (partition, value)  # replaces a write not sent yet

    def take_writes(self) -> dict[Any, tuple[int, Any]]:
        """The writes made since the last call, ``key -> (partition, value or None)``, to be
        sent by :meth:`send_writes` once the outputs of the same window are delivered."""
        unsent, self._unsent = self._unsent, {}
        if unsent:
            self._in_flight.append(unsent)  # until send_writes has them acknowledged
        return unsent

    @property
    def has_unsent(self) -> bool:
        return bool(self._unsent)

    async def send_writes(self, writes: dict[Any, tuple[int, Any]]) -> list[WrittenBatch]:
        """Send the changelog records of ``writes`` (from :meth:`take_writes`): one record
        batch per partition (more if it fills up), handed to the producer whole. Per-record
        sends cost a future, a metadata lookup and an accumulator append each, about a
        seventh of a loaded worker's time (py-spy, ``bench/pipeline_bench.py``)."""
        if not writes:
            return []
        per_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        dumps = orjson.dumps
        for key, (partition, value) in writes.items():
            key_bytes = key.encode() if isinstance(key, str) else bytes(key)
            record = (key_bytes, None if value is None else dumps(value))
            per_partition.setdefault(partition, []).append(record)
        producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        topic = self.changelog_topic.get_topic_name()
        written: list[WrittenBatch] = []
        try:
            # The lock keeps the changelog in the order of the writes; the bound covers the
            # wait for it and for room in the producer's buffer, not the delivery.
            async with asyncio.timeout(self.send_timeout_s), self._send_lock:
                for partition, records in per_partition.items():
                    batch, count = producer.create_batch(), 0
                    for key_bytes, value_bytes in records:
                        if batch.append(key=key_bytes, value=value_bytes, timestamp=None) is None:
                            # Full: sent as it is; a new batch always takes its first record.
                            fut = await producer.send_batch(batch, topic, partition=partition)
                            written.append(WrittenBatch(fut, count))
                            batch, count = producer.create_batch(), 0
                            batch.append(key=key_bytes, value=value_bytes, timestamp=None)
                        count += 1
                    fut = await producer.send_batch(batch, topic, partition=partition)
                    written.append(WrittenBatch(fut, count))
        except TimeoutError as exc:
            fatal(exc, f"changelog writes of {self.name} not sent within {self.send_timeout_s:g} s")
        except Exception as exc:
            fatal(exc)
        for batch_sent in written:
            batch_sent.future.add_done_callback(check_delivered)
        delivered = asyncio.gather(*(batch_sent.future for batch_sent in written))
        delivered.add_done_callback(lambda _: self._landed(writes))
        return written

    def _landed(self, writes: dict[Any, tuple[int, Any]]) -> None:
        """A window's writes are acknowledged (or failed, and the worker exits): their
        states may move to the cold tier from now on."""
        self._in_flight = [w for w in self._in_flight if w is not writes]

    def note_durable(self, delivered: Iterable[WrittenBatch]) -> None:
        """A snapshot window's writes are acknowledged: the changelog holds them up to these
        offsets (a partition it did not write keeps the offset of an earlier one: lower than
        the truth, which recovery survives)."""
        durable = self.durable_offsets
        for written in delivered:
            metadata = written.future.result()
            last = metadata.offset + written.records - 1
            if last > durable.get(metadata.partition, -1):
                durable[metadata.partition] = last

    def snapshot(self) -> TableSnapshot:
        """The states as they are now (shallow copies: states are replaced, never changed)."""
        return TableSnapshot(dict(self._states), dict(self._partition_of), time.time())

    @property
    def _states(self) -> dict[Any, Any]:
        return self.data.data  # type: ignore[attr-defined,no-any-return]

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        """Newly assigned partitions start from their snapshot, if there is a fresh one, and
        from their cold store with it (cleared when there is none: see :mod:`processors.cold`)."""
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        self._loaded_offsets = {}
        topic = self.changelog_topic.get_topic_name()
        if self.snapshots is not None:
            remove_temporaries(self.snapshots, topic)
        for tp in newly_assigned:
            if tp.topic != self.source_topic:
                continue
            cold = self.cold
            usable = self.snapshots is not None and (cold is None or cold.exists(tp.partition))
            loaded = usable and self._load_snapshot(topic, tp.partition)
            if cold is not None:
                cold.open(tp.partition, trusted=loaded)

    def _load_snapshot(self, topic: str, partition: int) -> bool:
        assert self.snapshots is not None
        # Millions of new objects: with the collector on, its full passes over them made
        # loading 3.4x slower (433,207 states: 8.7 s against 2.5 s). They are moved out of
        # its reach afterwards (states hold no cycles).
        gc.disable()
        try:
            snapshot = load_partition(self.snapshots, topic, partition, self.ttl_s)
        finally:
            gc.enable()
        if snapshot is None:
            return False
        gc.freeze()
        self._states.update(snapshot.states)
        partition_of = self._partition_of
        for key in snapshot.states:
            partition_of[key] = partition
        self._loaded_offsets[partition] = snapshot.offset
        log.info(
            "table %s partition %d: %d states from its snapshot at offset %d",
            self.name,
            partition,
            len(snapshot.states),
            snapshot.offset,
        )
        return True

    def persisted_offset(self, tp: TP) -> int | None:
        """Where recovery reads the changelog from: after the snapshot loaded, if any."""
        if tp.topic == self.changelog_topic.get_topic_name():
            return self._loaded_offsets.get(tp.partition)
        return None

    def on_key_del(self, key: Any) -> None:
        partition = self.partition_for_key(key)
        assert partition is not None
        self._partition_of.pop(key, None)
        self._unsent[key] = (partition, None)

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        """Recovery: each key's states in changelog order; a state already quiet (its
        ``last_ts`` more than ``quiet_s`` ago) goes to the cold tier, not to memory."""
        events = batch if isinstance(batch, list) else list(batch)
        cold = self.cold
        if cold is not None:
            events = self._recover_cold(cold, events)
        partition_of = self._partition_of
        for event in events:
            key = self._to_key(event.key)
            if event.message.value is None:
                partition_of.pop(key, None)
            else:
                partition_of[key] = event.message.partition
        super().apply_changelog_batch(events)

    def _recover_cold(self, cold: ColdStore, events: list[EventT]) -> list[EventT]:
        """Commit the recovered states whose last record is quiet to the cold tier; the
        events of the other keys, for the memory store. A partition whose cold store is
        not open keeps all its states in memory (the sweep moves them later): recovery
        restarted by a second rebalance once handed over a batch of such a partition, and
        the worker crashed on it (``KeyError`` in ``ColdStore.put``)."""
        cutoff = time.time() - self.quiet_s
        latest: dict[Any, tuple[int, Any]] = {}  # key -> (partition, cold state or None)
        for event in events:
            value = event.value
            if isinstance(value, bytes | bytearray):
                value = orjson.loads(value)
            quiet = isinstance(value, dict) and value.get("last_ts", cutoff) < cutoff
            latest[self._to_key(event.key)] = (event.message.partition, value if quiet else None)
        to_cold: dict[int, list[tuple[Any, Any]]] = {}
        tombstoned: dict[int, list[Any]] = {}
        for key, (partition, state) in latest.items():
            if state is not None and cold.store(partition) is not None:
                to_cold.setdefault(partition, []).append((key, state))
            else:  # hot, deleted (a cold copy must not outlive a tombstone), or not open
                tombstoned.setdefault(partition, []).append(key)
        for partition, keys in tombstoned.items():
            cold.delete(partition, keys)
        self._move_to_cold(to_cold)
        if not to_cold:
            return events
        gone_cold = {key for items in to_cold.values() for key, _ in items}
        return [e for e in events if self._to_key(e.key) not in gone_cold]

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        owned = {tp.partition for tp in active_tps}
        dropped = [k for k, p in self._partition_of.items() if p not in owned]
        for key in dropped:  # another worker owns them now: forget, without a tombstone
            self._partition_of.pop(key, None)
            self.data.pop(key, None)
        if dropped:
            log.info("table %s dropped %d states of revoked partitions", self.name, len(dropped))
        for partition in set(self.durable_offsets) - owned:
            del self.durable_offsets[partition]
        if self.cold is not None:
            self.cold.close(self.cold.partitions - owned)
        for partition in set(self._stream_time) - owned:
            del self._stream_time[partition]
        await super().on_recovery_completed(active_tps, standby_tps)

    def owned_partitions(self) -> set[int]:
        return {
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.source_topic
        }

    async def expire(self, now: float | None = None) -> int:
        """The sweep, over the partitions this worker owns: states quiet for ``quiet_s`` move
        to the cold tier, states past their TTL are deleted (hot or cold, with a tombstone on
        the changelog); the count deleted."""
        if self.app.rebalancing or self.app.in_recovery:
            return 0
        now = time.time() if now is None else now
        owned = self.owned_partitions()
        keys = list(self._partition_of)
        stream_time = self._stream_time  # kept between sweeps: a partition may go all cold
        over_budget = self.hot_max and len(self._states) > self.hot_max
        ages: list[tuple[float, Any]] = []  # (last_ts, key) of the owned states, if over
        async for key, partition, last_ts in self._scan(keys, owned):
            if last_ts > stream_time.get(partition, float("-inf")):
                stream_time[partition] = last_ts
            if over_budget:
                ages.append((last_ts, key))
        times = {p: min(now, t) for p, t in stream_time.items() if p in owned}
        ttl_cutoff = {p: t - self.ttl_s for p, t in times.items()}
        quiet_cutoff = {p: t - self.quiet_s for p, t in times.items()} if self.cold else {}
        expired = demoted = 0
        for start in range(0, len(keys), _SWEEP_CHUNK):
            if self.app.rebalancing:
                break  # ownership is changing: try again at the next sweep
            chunk = self._sweep_chunk(keys[start : start + _SWEEP_CHUNK], ttl_cutoff, quiet_cutoff)
            expired += chunk[0]
            demoted += chunk[1]
            await asyncio.sleep(0)
        if ages and not self.app.rebalancing:
            demoted += await self._demote_over_budget(ages)
        cold = self.cold
        if cold is not None:
            for partition in cold.partitions & set(ttl_cutoff):
                while not self.app.rebalancing:
                    gone = cold.older_than(partition, ttl_cutoff[partition], _SWEEP_CHUNK)
                    if not gone:
                        break
                    for key in gone:
                        if key not in self._states:  # else a stale copy of a hot state
                            self._unsent[key] = (partition, None)  # the tombstone
                            expired += 1
                    cold.delete(partition, gone)
                    await asyncio.sleep(0)
        # The tombstones go with the stage's next flush (:attr:`has_unsent`), in order with
        # the writes of the windows still being delivered.
        self.expired_total += expired
        self.demoted_total += demoted
        if expired or demoted:
            log.info("table %s: %d states expired, %d moved to disk", self.name, expired, demoted)
        return expired

    def _sweep_chunk(
        self, keys: list[Any], ttl_cutoff: dict[int, float], quiet_cutoff: dict[int, float]
    ) -> tuple[int, int]:
        """One step of the sweep, without awaiting: a state is committed to the cold tier
        before it leaves memory. (expired, moved to the cold tier).

        A state whose latest write Kafka does not hold yet stays in memory, however quiet
        its event time: its window's outputs may not be sent either, and a copy on disk would
        run ahead of them. A worker killed then left the cold copy with the window's events
        merged; its successor, trusting the store, took the redelivered events for
        duplicates and never sent their outputs (a CI run: rollups a few versions behind;
        ``tests/integration/processors/test_oracle.py``, states with writes in flight)."""
        states, partition_of = self._states, self._partition_of
        unsettled = self._unsettled()
        expired = 0
        to_cold: dict[int, list[tuple[Any, Any]]] = {}
        for key in keys:
            partition = partition_of.get(key)
            limit = ttl_cutoff.get(partition)  # type: ignore[arg-type]
            if limit is None:  # not owned, or gone
                continue
            state = states.get(key)
            last_ts = state.get("last_ts") if isinstance(state, dict) else None
            if not isinstance(last_ts, int | float):
                continue
            if last_ts < limit:
                self._unsent[key] = (partition, None)  # the tombstone
                partition_of.pop(key, None)
                states.pop(key, None)
                expired += 1
            elif last_ts < quiet_cutoff.get(partition, float("-inf")) and not unsettled(key):  # type: ignore[arg-type]
                to_cold.setdefault(partition, []).append((key, state))  # type: ignore[arg-type]
        return expired, self._move_to_cold(to_cold)

    def _unsettled(self) -> Callable[[Any], bool]:
        """Whether a key has a write Kafka does not hold yet (unsent, or sent with a window
        not acknowledged): such a state never leaves memory. As of now: a flush replaces
        ``_unsent``, so call again after every await."""
        pending = [self._unsent, *self._in_flight]
        return lambda key: any(key in writes for writes in pending)

    def _move_to_cold(self, to_cold: dict[int, list[tuple[Any, Any]]]) -> int:
        """Commit states to the cold tier, then drop them from memory; how many moved. The
        states of a partition whose cold store is not open stay in memory."""
        if not to_cold:  # (also every sweep with the cold tier off)
            return 0
        demoted = 0
        states, partition_of = self._states, self._partition_of
        cold = self.cold
        assert cold is not None
        for partition, items in to_cold.items():
            if cold.store(partition) is None:
                continue
            demoted += cold.put(partition, items)
            for key, _ in items:
                states.pop(key, None)
                partition_of.pop(key, None)
        return demoted

    async def _demote_over_budget(self, ages: list[tuple[float, Any]]) -> int:
        """Move the longest-quiet states (by event time) to the cold tier until at most
        ``hot_max`` stay in memory; states with writes Kafka does not hold yet stay (see
        :meth:`_sweep_chunk`), and the next sweep takes others in their place. How many
        moved."""
        excess = len(self._states) - self.hot_max
        if excess <= 0:
            return 0
        states, partition_of = self._states, self._partition_of
        oldest = heapq.nsmallest(excess, (age for age in ages if age[1] in states))
        demoted = 0
        for start in range(0, len(oldest), _SWEEP_CHUNK):
            if self.app.rebalancing:
                break  # ownership is changing: the next sweep goes on
            unsettled = self._unsettled()  # again at every chunk: the stream ran meanwhile
            to_cold: dict[int, list[tuple[Any, Any]]] = {}
            for _, key in oldest[start : start + _SWEEP_CHUNK]:
                partition = partition_of.get(key)
                state = states.get(key)
                if partition is None or state is None or unsettled(key):
                    continue
                to_cold.setdefault(partition, []).append((key, state))
            demoted += self._move_to_cold(to_cold)
            await asyncio.sleep(0)
        return demoted

    async def _scan(self, keys: list[Any], owned: set[int]) -> Any:
        """``(key, partition, last_ts)`` of the keys still present in an owned partition."""
        data = self.data
        for start in range(0, len(keys), _SWEEP_CHUNK):
            if self.app.rebalancing:
                return  # ownership is changing: try again at the next sweep
            for key in keys[start : start + _SWEEP_CHUNK]:
                partition = self._partition_of.get(key)
                if partition not in owned:
                    continue
                state = data.get(key)
                last_ts = state.get("last_ts") if isinstance(state, dict) else None
                if isinstance(last_ts, int | float):
                    yield key, partition, float(last_ts)
            await asyncio.sleep(0)
