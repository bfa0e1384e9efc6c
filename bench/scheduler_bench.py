"""The deadline scheduler under load: CPU to arm and fire, and when each callback finishes.

`zsp_operator.engine.scheduler.DeadlineScheduler` on one asyncio event loop, on the wall clock (as the
operator runs it), at concurrency 16. The callback stands in for a revocation: it sleeps a
fixed service time (10 ms by default) and reports what it took through `record_latency`, as the
revoker reports the time until the binding is cut. Cases:

- `spread`: 10 000 deadlines drawn uniformly over 20 s;
- `one second`: 1 000 deadlines drawn within the same second;
- `one instant`: 1 000 equal deadlines;
- `spread + one second`: both of the above armed together, the second in the middle of the 20 s;
- `one instant, cold`: 1 000 equal deadlines on a scheduler that has measured nothing yet, so it
  assumes its default throughput (50 per second).

Every other case starts from a scheduler that has measured one round of callbacks (one per
slot). For each case: the CPU time of the process (`time.process_time`) to arm every key, and
from then until the last callback has finished (scheduler and the callbacks' own asyncio work
together, sleeping costs none); then, over every callback, how long before (-) or after (+) its
deadline it *finished*: median, p99, latest and earliest, and how many finished after it; and
how much longer than asked the callbacks' sleeps took (a busy machine shows there first).

    python bench/scheduler_bench.py            # about 90 seconds, most of it waiting for deadlines
    python bench/scheduler_bench.py --quick    # a tenth of the keys, shorter spans: a smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from machine import describe, load

from zsp_operator.engine.scheduler import DeadlineScheduler

CONCURRENCY = 16


@dataclass(frozen=True)
class Case:
    name: str
    spread: int  # deadlines drawn over `span` seconds
    clustered: int  # deadlines drawn within one second, in the middle of the span
    instant: bool  # the clustered deadlines are all equal
    span: float
    warm: bool = True


@dataclass(frozen=True)
class Outcome:
    case: Case
    keys: int
    arm_cpu: float
    fire_cpu: float
    offsets: list[float]  # finish - deadline, seconds, per callback
    throughput: float
    first_lead: float  # how long before the earliest deadline the first callback started
    lag: list[float]  # how much longer than asked each callback's sleep took, seconds


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def clock() -> datetime:
    return datetime.now(UTC)


async def run_case(case: Case, service: float, rng: random.Random) -> Outcome:
    deadlines: dict[str, datetime] = {}
    finished: dict[str, datetime] = {}
    started: list[datetime] = []
    lag: list[float] = []
    warmed, done = asyncio.Event(), asyncio.Event()
    warm_left = CONCURRENCY
    sched: DeadlineScheduler

    async def callback(key: str) -> None:
        nonlocal warm_left
        begun = clock()
        if key in deadlines:
            started.append(begun)
        await asyncio.sleep(service)
        end = clock()
        sched.record_latency((end - begun).total_seconds())
        if key in deadlines:
            finished[key] = end
            lag.append((end - begun).total_seconds() - service)
            if len(finished) == len(deadlines):
                done.set()
        else:
            warm_left -= 1
            if warm_left == 0:
                warmed.set()

    sched = DeadlineScheduler(callback, clock, concurrency=CONCURRENCY)
    sched.start()
    if case.warm:
        for i in range(CONCURRENCY):
            sched.arm(f"warm-{i}", clock())
        await warmed.wait()
    # Far enough ahead for the lead a cold scheduler gives 1 000 equal deadlines (20 s at 50/s).
    base = clock() + timedelta(seconds=3 if case.warm else 25)
    middle = base + timedelta(seconds=case.span / 2)
    for i in range(case.spread):
        deadlines[f"spread-{i}"] = base + timedelta(seconds=rng.uniform(0, case.span))
    for i in range(case.clustered):
        offset = 0.0 if case.instant else rng.uniform(0, 1)
        deadlines[f"cluster-{i}"] = middle + timedelta(seconds=offset)
    items = list(deadlines.items())
    rng.shuffle(items)

    cpu = time.process_time()
    for key, deadline in items:
        sched.arm(key, deadline)
    arm_cpu = time.process_time() - cpu

    cpu = time.process_time()
    await done.wait()
    fire_cpu = time.process_time() - cpu
    await sched.stop()
    offsets = [(finished[key] - deadline).total_seconds() for key, deadline in deadlines.items()]
    first_lead = (min(deadlines.values()) - min(started)).total_seconds()
    return Outcome(case, len(deadlines), arm_cpu, fire_cpu, offsets, sched.throughput, first_lead, lag)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:+.1f} ms"


def row(outcome: Outcome) -> str:
    offsets = outcome.offsets
    late = sum(1 for offset in offsets if offset > 0)
    return (
        f"| {outcome.case.name} | {outcome.keys} | {outcome.arm_cpu * 1000:.1f} ms "
        f"({outcome.arm_cpu / outcome.keys * 1e6:.1f} µs/key) | {outcome.fire_cpu * 1000:.0f} ms "
        f"({outcome.fire_cpu / outcome.keys * 1e6:.0f} µs/key) | {ms(statistics.median(offsets))} | "
        f"{ms(percentile(offsets, 0.99))} | {ms(max(offsets))} | {ms(min(offsets))} | {late} | "
        f"{outcome.first_lead:.2f} s | {outcome.throughput:.0f}/s | "
        f"{ms(percentile(outcome.lag, 0.99))} / {ms(max(outcome.lag))} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the keys, a shorter span")
    parser.add_argument("--service", type=float, default=0.010, help="seconds each callback takes")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    scale, span = (10, 4.0) if args.quick else (1, 20.0)
    spread, clustered = 10_000 // scale, 1_000 // scale
    cases = [
        Case("spread", spread, 0, False, span),
        Case("one second", 0, clustered, False, span),
        Case("one instant", 0, clustered, True, span),
        Case("spread + one second", spread, clustered, False, span),
        Case("one instant, cold", 0, clustered, True, span, warm=False),
    ]
    machine = describe()
    rng = random.Random(args.seed)
    outcomes = []
    for case in cases:
        print(f"running {case.name} ...", file=sys.stderr)
        outcomes.append(asyncio.run(run_case(case, args.service, rng)))
    print(f"## Deadline scheduler: concurrency {CONCURRENCY}, callbacks of {args.service * 1000:g} ms\n")
    print(f"{machine}\n- load average at the end: {load()}\n")
    print(
        "Finish = when the callback finished, relative to its deadline (- before, + after). "
        "CPU is the whole process's; `first lead` is how long before the earliest deadline the "
        "first callback started; `throughput` is what the scheduler measured by the end; `loop lag` is "
        "how much longer than asked the callbacks' own sleeps took (p99 / max): the event loop's "
        "delay, which a busy machine adds to every figure.\n"
    )
    print(
        "| case | keys | CPU to arm | CPU to fire | finish p50 | finish p99 | finish latest "
        "| finish earliest | late | first lead | throughput | loop lag |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for outcome in outcomes:
        print(row(outcome))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
