"""Run the fault suite again and again, each time with another seed, and keep what failed.

The reproducer of issue 14's post-rebalance stall: the short fault suite (24,000 events;
two workers and two sinks SIGKILLed, the broker and PostgreSQL restarted, on scratch
services of its own) is run ``--runs`` times, run ``i`` with seed ``--seed + i``. A run
that fails keeps its whole directory: every process's log, the oracle's mismatches, the
timeline and, when py-spy is installed, a stack dump (with locals) of each process taken
while it was still stuck (``stacks.txt``). ``--until-failure`` stops at the first failure.

Usage::

    python scripts/soak_faults.py --runs 30 [--seed 1000] [--long] [--until-failure]
        [--keep /tmp/soak-faults]

Prints one line per run and a summary (runs, failures, stalls), and exits 1 when any run
failed. A run counts as a stall when the tables stopped short of the oracle (the test's
settle timeout) with records left unread by a consumer group; a run that settled different
from the oracle with nothing left to read is a wrong result. A failed run's scratch
services are kept (stopped) in the folder its log names.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from kernel.settings import child_environment

REPO = Path(__file__).resolve().parent.parent

# What the fault test prints when the tables never reached the oracle within its timeout
# with records left unread by a group (a stall), rather than settled different (a wrong
# result, nothing left to read).
_STALLED = "(stalled: lag"


@dataclass(frozen=True, slots=True)
class RunResult:
    index: int
    seed: int
    passed: bool
    stalled: bool
    seconds: float
    directory: Path


def run_once(index: int, seed: int, keep: Path, long: bool) -> RunResult:
    directory = keep / f"run-{index:03d}-seed-{seed}"
    directory.mkdir(parents=True, exist_ok=True)
    # A failed run keeps its scratch services (stopped) too, to read its topics afterwards.
    env = child_environment({"LOGFLUME_FAULTS_SEED": str(seed), "LOGFLUME_KEEP_SCRATCH": "1"})
    if long:
        env["LOGFLUME_FAULTS"] = "long"
    command = [
        sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
        f"--basetemp={directory / 'tmp'}", "tests/faults/test_faults.py",
    ]  # fmt: skip
    start = time.monotonic()
    with (directory / "pytest.log").open("wb") as out:
        done = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    text = (directory / "pytest.log").read_text(errors="replace")
    passed = done.returncode == 0
    return RunResult(index, seed, passed, not passed and _STALLED in text, seconds, directory)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first run")
    parser.add_argument("--long", action="store_true", help="the long form (200,000 events)")
    parser.add_argument("--until-failure", action="store_true", help="stop at the first failure")
    parser.add_argument("--keep", type=Path, default=Path("/tmp/soak-faults"))
    parser.add_argument(
        "--keep-passed", action="store_true", help="keep passed runs' directories too"
    )
    args = parser.parse_args()

    console = Console()
    results: list[RunResult] = []
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("fault suite runs", total=args.runs)
        for index in range(args.runs):
            result = run_once(index, args.seed + index, args.keep, args.long)
            results.append(result)
            verdict = "passed" if result.passed else ("STALLED" if result.stalled else "FAILED")
            progress.console.print(
                f"run {index + 1:3d} seed {result.seed}: {verdict} in {result.seconds:.0f} s"
                + ("" if result.passed else f"  (kept: {result.directory})")
            )
            if result.passed and not args.keep_passed:
                subprocess.run(["rm", "-rf", str(result.directory)], check=False)
            progress.advance(task)
            if args.until_failure and not result.passed:
                break

    failed = [r for r in results if not r.passed]
    stalled = [r for r in failed if r.stalled]
    minutes = sum(r.seconds for r in results) / 60
    console.print(
        f"{len(results)} runs in {minutes:.1f} min: {len(results) - len(failed)} passed, "
        f"{len(failed)} failed ({len(stalled)} stalls)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
