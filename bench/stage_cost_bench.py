"""Cost of the pure stages, no Kafka and no Faust: microseconds per event in each stage and
derived records per input record, for the live output window against per-record packing.

    python bench/stage_cost_bench.py [--events 40000] [--partitions 12] [--window 64]
        [--payload-bytes 0] [--workload synthetic|latency [--rate 5000]]
        [--json] [--save FILE] [--baseline FILE [--tolerance 0.2]]

The synthetic stream (``logflume.synthetic``) is packed into raw-topic records as the SDK
packs them, then run through :class:`processors.sequential.SequentialStages` (the same
runners, reducers and windows as the Faust agents) twice in the same run:

- ``window``: outputs coalesced over ``--window`` records per stage (the live default);
- ``per-record``: a window of one record, which is how the stages packed before windows.

Printed per design: us/event of each stage (reduce and flush), all stages, derived
records (entities + rollups + groups topics) per input record, and the stages' state at
the end (serialized bytes per event and per stage-1 entity: what the workers hold in
memory and on the changelogs). ``--payload-bytes N`` adds N characters to every message
and output (the heavy workload: state per entity should not grow with it).
``--workload latency`` runs the latency runs' stream of ``bench/pipeline_bench.py``
instead: new logs, each with one of 100 prompt versions and so a trace of its own, packed
per partition per 20 ms tick at ``--rate`` events/s as that bench sends them (a log costs
the stages ~2.5x the synthetic mix's average event: the reason 10,000/s of them is past
what the pipeline holds while the mix reaches ~11,000).
Targets (issue 13): at most 25 us/event for all stages and at most 1.5 derived records
per input record at 12 partitions. ``--baseline FILE`` compares with a saved
``--json``/``--save`` result and exits 1 when a design got slower (us/event) or fanned out
more by over ``--tolerance``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's root

from bench.pipeline_bench import PROBE_EVERY, TICK_S, pack_keyed, probe_event
from kernel.runtime import tune_gc
from kernel.settings import Settings
from logflume.synthetic import generate_events, pack_events
from processors.sequential import SequentialStages
from processors.topology import STAGES


def run_design(
    records: list[tuple[int, bytes]], events: int, settings: Settings, window: int
) -> dict[str, Any]:
    stages = SequentialStages.for_settings(settings, window_records=window)
    tune_gc()  # as the workers do
    started = time.perf_counter()
    stages.run_records(records)
    wall = time.perf_counter() - started
    per_stage = {name: stages.seconds[name] * 1e6 / events for name in STAGES}
    return {
        "window_records": window,
        "us_per_event": per_stage,
        "us_per_event_all": sum(per_stage.values()),
        "wall_us_per_event": wall * 1e6 / events,
        "events_per_s": events / wall,
        "input_records": len(records),
        "derived_records": stages.derived_records(),
        "derived_per_input_record": stages.derived_records() / len(records),
        "records_out": dict(stages.records_out),
        "state": state_size(stages, events),
    }


def state_size(stages: SequentialStages, events: int) -> dict[str, Any]:
    """Serialized bytes of each stage's final table (what a worker holds and its changelog
    carries), per input event; and per stage-1 entity."""
    sizes = {
        name: sum(len(orjson.dumps(value)) for value in stages.tables[name].values())
        for name in STAGES
    }
    entities = len(stages.tables["entities"])
    return {
        "bytes_per_event": {name: size / events for name, size in sizes.items()},
        "bytes_per_event_all": sum(sizes.values()) / events,
        "entities": entities,
        "bytes_per_entity": sizes["entities"] / max(entities, 1),
    }


def latency_records(events: int, partitions: int, rate: int) -> list[tuple[int, bytes]]:
    """The latency runs' logs as ``bench/pipeline_bench.py`` sends them at ``rate``
    events/s: one batch per 20 ms tick, packed per partition (at most 40 per record)."""
    ts = datetime.now(UTC).isoformat()
    per_tick = max(1, round(rate * TICK_S))
    records: list[tuple[int, bytes]] = []
    for first in range(0, events, per_tick):
        tick = range(first, min(first + per_tick, events))
        batch = [probe_event("stage", n, ts, probe=(n - first) % PROBE_EVERY == 0) for n in tick]
        records += pack_keyed(batch, partitions, 40)
    return records


def regressions(report: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> list[str]:
    lost = []
    for design, r in report["results"].items():
        before = baseline["results"].get(design)
        if not before:
            continue
        for figure in ("us_per_event_all", "derived_per_input_record"):
            if r[figure] > before[figure] * (1 + tolerance):
                lost.append(f"{design}: {figure} {r[figure]:.2f} > {before[figure]:.2f}")
    return lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument(
        "--window",
        type=int,
        default=64,
        help="records per output window (64: what 50 ms holds at 25,000 events/s)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--payload-bytes", type=int, default=0, help="characters added to messages and outputs"
    )
    parser.add_argument(
        "--workload",
        choices=("synthetic", "latency"),
        default="synthetic",
        help="the synthetic mix, or the latency runs' new logs with prompt versions",
    )
    parser.add_argument(
        "--rate", type=int, default=5000, help="latency workload: events/s it is packed at"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--save", type=Path, help="also write the JSON result to FILE")
    parser.add_argument("--baseline", type=Path, help="compare with a saved JSON result")
    parser.add_argument("--tolerance", type=float, default=0.2)
    args = parser.parse_args()

    settings = Settings(partitions=args.partitions)
    if args.workload == "latency":
        count = args.events
        records = latency_records(count, args.partitions, args.rate)
    else:
        events = generate_events(args.events, seed=args.seed, payload_bytes=args.payload_bytes)
        count = len(events)
        records = pack_events(events, args.partitions, seed=args.seed)
    run_design(records[:200], count, settings, args.window)  # warm up (price table...)
    results = {
        "per-record": run_design(records, count, settings, 1),
        "window": run_design(records, count, settings, args.window),
    }
    report = {
        "events": count,
        "workload": args.workload,
        "partitions": args.partitions,
        "payload_bytes": args.payload_bytes,
        "results": results,
    }
    if args.save:
        args.save.write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{count:,} events ({args.workload}) in {len(records):,} records, "
            f"{args.partitions} partitions"
        )
        for design, r in results.items():
            stages = ", ".join(f"{n} {us:.1f}" for n, us in r["us_per_event"].items())
            print(
                f"  {design:<10} {r['us_per_event_all']:6.1f} us/event ({stages}); "
                f"{r['derived_per_input_record']:.2f} derived records per input record; "
                f"{r['events_per_s']:,.0f} events/s"
            )
        state = results["window"]["state"]
        per_stage = ", ".join(f"{n} {b:,.0f}" for n, b in state["bytes_per_event"].items())
        print(
            f"  state at the end: {state['bytes_per_event_all']:,.0f} bytes/event ({per_stage}); "
            f"{state['bytes_per_entity']:,.0f} bytes per stage-1 entity "
            f"({state['entities']:,} entities); events of {args.payload_bytes:,} extra "
            "payload characters"
        )
    if args.baseline:
        lost = regressions(report, json.loads(args.baseline.read_text()), args.tolerance)
        if lost:
            print("regressions against the baseline:\n  " + "\n  ".join(lost), file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
